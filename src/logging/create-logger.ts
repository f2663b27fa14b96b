import cluster from 'node:cluster';
import winston from 'winston';
import type { LogLevel, LoggerConfig } from '../config/config.js';
import { BoundedOutput, type LossReport } from './bounded-output.js';
import type { LogFields, Logger } from './logger.js';
import { LOG_OUTPUTS } from './output-registry.js';
import { redactSecrets } from './redact-secrets.js';
import type { StackdriverEndpoint } from './stackdriver-output.js';
import { createStdoutOutput } from './stdout-output.js';

const LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };
/** How long `flush()` waits for remote outputs before exit. */
const FLUSH_TIMEOUT_MS = 3000;

export interface CreateLoggerOptions {
  /** Another Cloud Logging API endpoint than logging.googleapis.com:443 (host:port). */
  readonly stackdriverEndpoint?: StackdriverEndpoint | undefined;
}

/**
 * Checks every configured output's settings (Splunk URL and token, Cloud Logging credentials file)
 * without opening anything; throws a ConfigError naming the property. Returns warnings about
 * settings that work but weaken security. createLogger calls it; the primary may call it earlier.
 */
export function validateLoggerConfig(config: LoggerConfig): readonly string[] {
  return config.types.flatMap((type) => LOG_OUTPUTS[type].validate(config));
}

/**
 * The process's logger: every configured output, at the configured level, one record shape
 * (time, level, message, worker, then the fields, among them `requestId`). Throws a ConfigError
 * if an output's settings cannot work.
 */
export function createLogger(config: LoggerConfig, options: CreateLoggerOptions = {}): Logger {
  const warnings = validateLoggerConfig(config);
  const worker = cluster.isWorker ? `worker-${cluster.worker?.id ?? process.pid}` : 'primary';
  const format = winston.format.combine(
    winston.format((info) => {
      info['time'] = new Date().toISOString();
      info['worker'] = worker;
      return info;
    })(),
    redactSecrets(),
  );
  // Losses of remote outputs are reported on stdout whether or not StdoutLogger is configured:
  // the remote output is the one that cannot carry the news.
  const reporter = winston.createLogger({ levels: LEVELS, level: 'warn', format, transports: [createStdoutOutput(config)] });
  reporter.on('error', () => undefined);
  const onLoss = (report: LossReport): void => {
    reporter.warn(lossMessage(report), { output: report.output, dropped: report.dropped, failed: report.failed, lastError: report.lastError });
  };
  const transports = config.types.map((type) => LOG_OUTPUTS[type].create(config, { onLoss, stackdriverEndpoint: options.stackdriverEndpoint }));
  const base = winston.createLogger({ levels: LEVELS, level: config.level, format, transports, exitOnError: false });
  // A transport error (stdout closed, say) must not become an unhandled 'error' event of the logger.
  base.on('error', () => undefined);
  const state: LoggerState = {
    base,
    reporter,
    remote: transports.filter((t): t is BoundedOutput => t instanceof BoundedOutput),
    closed: false,
  };
  const logger = new WinstonLogger(state, {});
  // Once per service, not once per worker.
  if (!cluster.isWorker) for (const warning of warnings) logger.warn(warning);
  return logger;
}

/** The operator-facing line about lost entries. */
export function lossMessage(report: LossReport): string {
  const parts = [
    report.dropped > 0 ? `${report.dropped} dropped (buffer full: the destination is slow or down)` : '',
    report.failed > 0 ? `${report.failed} not accepted by the destination${report.lastError === undefined ? '' : ` (last error: ${report.lastError})`}` : '',
  ].filter(Boolean);
  return `Log output ${report.output} lost entries: ${parts.join(', ')}`;
}

interface LoggerState {
  readonly base: winston.Logger;
  readonly reporter: winston.Logger;
  readonly remote: readonly BoundedOutput[];
  closed: boolean;
}

class WinstonLogger implements Logger {
  constructor(
    private readonly state: LoggerState,
    private readonly fields: LogFields,
  ) {}

  log(level: LogLevel, message: string, fields?: LogFields): void {
    if (this.state.closed) return;
    this.state.base.log(level, message, { ...this.fields, ...fields });
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
    return new WinstonLogger(this.state, { ...this.fields, ...fields });
  }
  async flush(): Promise<void> {
    if (this.state.closed) return;
    this.state.closed = true;
    const { base, remote, reporter } = this.state;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, FLUSH_TIMEOUT_MS);
      base.on('finish', () => {
        clearTimeout(timer);
        resolve();
      });
      base.end();
    });
    // Remote outputs acknowledge at once and deliver in the background: wait for them (bounded),
    // which also reports on stdout whatever could not be delivered before exit.
    await Promise.all(remote.map((output) => output.drain(FLUSH_TIMEOUT_MS)));
    for (const output of remote) output.close();
    reporter.end();
  }
}
