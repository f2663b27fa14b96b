import type { LogLevel } from '../config/config.js';

/** Structured fields of a log entry; values must never be secrets (keys, tokens, passwords, PINs). */
export type LogFields = Readonly<Record<string, string | number | boolean | null | undefined | readonly string[]>>;

/**
 * The application's logger. Every output (stdout, Splunk, Cloud Logging) receives the same record
 * shape: time, level, message, worker id, request id and fields.
 */
export interface Logger {
  log(level: LogLevel, message: string, fields?: LogFields): void;
  trace(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /**
   * An audit entry: written at info to every output whatever `logger.default.level` says (an
   * access to key material is a record, not a diagnostic). Only src/logging/audit-trail.ts calls it.
   */
  audit(message: string, fields: LogFields): void;
  /** Changes the level from now on (a reload's new `logger.default.level`); children share it. */
  setLevel(level: LogLevel): void;
  /** A logger that adds these fields to every entry (e.g. the request id). */
  child(fields: LogFields): Logger;
  /** Waits until buffered entries are handed to their outputs (bounded), before exit. */
  flush(): Promise<void>;
}
