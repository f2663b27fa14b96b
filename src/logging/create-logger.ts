import cluster from 'node:cluster';
import winston from 'winston';
import type { LogLevel, LoggerConfig } from '../config/config.js';
import type { LogFields, Logger } from './logger.js';
import { LOG_OUTPUTS } from './output-registry.js';

const LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

/** The process's logger: every configured output, at the configured level, one record shape. */
export function createLogger(config: LoggerConfig): Logger {
  const worker = cluster.isWorker ? `worker-${cluster.worker?.id ?? process.pid}` : 'primary';
  const base = winston.createLogger({
    levels: LEVELS,
    level: config.level,
    format: winston.format.combine(
      winston.format((info) => {
        info['time'] = new Date().toISOString();
        info['worker'] = worker;
        return info;
      })(),
    ),
    transports: config.types.map((type) => LOG_OUTPUTS[type](config)),
    exitOnError: false,
  });
  return new WinstonLogger(base, {});
}

class WinstonLogger implements Logger {
  constructor(
    private readonly base: winston.Logger,
    private readonly fields: LogFields,
  ) {}

  log(level: LogLevel, message: string, fields?: LogFields): void {
    this.base.log(level, message, { ...this.fields, ...fields });
  }
  trace(message: string, fields?: LogFields): void {
    this.log('trace', message, fields);
  }
  debug(message: string, fields?: LogFields): void {
    this.log('debug', message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.log('info', message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.log('warn', message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.log('error', message, fields);
  }
  child(fields: LogFields): Logger {
    return new WinstonLogger(this.base, { ...this.fields, ...fields });
  }
  async flush(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      this.base.on('finish', () => {
        clearTimeout(timer);
        resolve();
      });
      this.base.end();
    });
  }
}
