import type { LogFields, Logger } from '../../src/logging/logger.js';
import type { LogLevel } from '../../src/config/config.js';

/** A Logger that keeps entries in memory, for tests that read what was logged. */
export class MemoryLogger implements Logger {
  readonly entries: { level: LogLevel; message: string; fields: LogFields }[] = [];
  constructor(private readonly fields: LogFields = {}, entries?: MemoryLogger['entries']) {
    if (entries) this.entries = entries;
  }
  log(level: LogLevel, message: string, fields: LogFields = {}): void {
    this.entries.push({ level, message, fields: { ...this.fields, ...fields } });
  }
  trace(m: string, f?: LogFields): void { this.log('trace', m, f); }
  debug(m: string, f?: LogFields): void { this.log('debug', m, f); }
  info(m: string, f?: LogFields): void { this.log('info', m, f); }
  warn(m: string, f?: LogFields): void { this.log('warn', m, f); }
  error(m: string, f?: LogFields): void { this.log('error', m, f); }
  child(fields: LogFields): Logger { return new MemoryLogger({ ...this.fields, ...fields }, this.entries); }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}
