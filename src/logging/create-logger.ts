import cluster from 'node:cluster';
import winston from 'winston';
import type { LogLevel, LoggerConfig } from '../config/config.js';
import { logEntriesLost } from '../metrics/ekm-metrics.js';
import { BoundedOutput, type LossReport } from './bounded-output.js';
import type { LogFields, Logger } from './logger.js';
import { LOG_OUTPUTS, type PreparedOutput } from './output-registry.js';
import { redactSecrets } from './redact-secrets.js';
import type { StackdriverEndpoint } from './stackdriver-output.js';
import { createStdoutOutput } from './stdout-output.js';

const LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };
/** How long `flush()` waits for remote outputs before exit. */
const FLUSH_TIMEOUT_MS = 3000;

export interface CreateLoggerOptions {
  /** Another Cloud Logging API endpoint than logging.googleapis.com:443 (host:port). */
  readonly stackdriverEndpoint?: StackdriverEndpoint | undefined;
  /** StdoutLogger writes each event-loop turn's lines together (the service's workers); see StdoutOutputOptions. */
  readonly batchStdout?: boolean | undefined;
}

/**
 * Checks every configured output's settings (Splunk URL and token, Cloud Logging credentials file)
 * without opening anything; throws a ConfigError naming the property. Returns warnings about
 * settings that work but weaken security: the check createLogger makes first, without creating
 * the outputs. Each output's settings are read once (a credentials file, say), then its factory runs.
 */
export function validateLoggerConfig(config: LoggerConfig): readonly string[] {
  return prepareOutputs(config).flatMap((output) => output.warnings);
}

function prepareOutputs(config: LoggerConfig): PreparedOutput[] {
  return config.types.map((type) => LOG_OUTPUTS[type].prepare(config));
}

/**
 * The process's logger: every configured output, at the configured level, one record shape
 * (time, level, message, worker, then the fields, among them `requestId`). Throws a ConfigError
 * if an output's settings cannot work.
 */
export function createLogger(config: LoggerConfig, options: CreateLoggerOptions = {}): Logger {
  const prepared = prepareOutputs(config);
  const warnings = prepared.flatMap((output) => output.warnings);
  const worker = cluster.isWorker ? `worker-${cluster.worker?.id ?? process.pid}` : 'primary';
  const format = winston.format.combine(
    winston.format((info) => {
      info.time = new Date().toISOString();
      info.worker = worker;
      return info;
    })(),
    redactSecrets(),
  );
  // Losses of remote outputs are reported on stdout whether or not StdoutLogger is configured:
  // the remote output is the one that cannot carry the news.
  const reporter = winston.createLogger({ levels: LEVELS, level: 'warn', format, transports: [createStdoutOutput(config, { batched: options.batchStdout })] });
  reporter.on('error', () => undefined);
  const onLoss = (report: LossReport): void => {
    reporter.warn(lossMessage(report), { output: report.output, dropped: report.dropped, failed: report.failed, lastError: report.lastError });
    if (report.dropped > 0) logEntriesLost.inc({ output: report.output, reason: 'dropped' }, report.dropped);
    if (report.failed > 0) logEntriesLost.inc({ output: report.output, reason: 'failed' }, report.failed);
  };
  const transports = prepared.map((output) => output.create({ onLoss, stackdriverEndpoint: options.stackdriverEndpoint, batchStdout: options.batchStdout }));
  const base = winston.createLogger({ levels: LEVELS, level: config.level, format, transports, exitOnError: false });
  // A transport error (stdout closed, say) must not become an unhandled 'error' event of the logger.
  base.on('error', () => undefined);
  const state: LoggerState = {
    base,
    reporter,
    remote: transports.filter((t): t is BoundedOutput => t instanceof BoundedOutput),
    closed: false,
    threshold: LEVELS[config.level],
    format,
    outputs: transports,
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
  /** The most verbose level written (LEVELS value of logger.default.level). */
  readonly threshold: number;
  /** time, worker, redaction: applied once per entry, before any output sees it. */
  readonly format: Format;
  /** The configured outputs (base's transports), each called directly by `log`. */
  readonly outputs: readonly winston.transport[];
}

/** winston's own keys on an entry (triple-beam): outputs read the level from it. */
type Format = ReturnType<typeof winston.format.combine>;
const LEVEL = Symbol.for('level');
const ignore = (): void => undefined;

class WinstonLogger implements Logger {
  constructor(
    private readonly state: LoggerState,
    private readonly fields: LogFields,
  ) {}

  /**
   * Hands the entry to each output's format and `log` directly, as winston's logger would after its
   * object-stream pipeline, which cost more CPU than a request's key lookup (two entries per key
   * fetch: access line and audit entry). The entry is what winston would make of
   * `base.log(level, message, fields)` (the fields, level, message and winston's level key), built
   * in the order its JSON line shows: time, level, message, worker, then the fields.
   */
  log(level: LogLevel, message: string, fields?: LogFields): void {
    const state = this.state;
    if (state.closed || LEVELS[level] > state.threshold) return;
    const record: Record<string | symbol, unknown> = { time: undefined, level, message, worker: undefined };
    for (const name in this.fields) record[name] = this.fields[name];
    if (fields !== undefined) for (const name in fields) record[name] = fields[name];
    record.level = level;
    record.message = message;
    record[LEVEL] = level;
    const entry = state.format.transform(record as winston.Logform.TransformableInfo, state.format.options);
    if (typeof entry !== 'object') return;
    const shared = state.outputs.length === 1;
    for (const output of state.outputs) {
      if (output.silent || (output.level !== undefined && LEVELS[level] > LEVELS[output.level as LogLevel])) continue;
      try {
        // Each output's format adds its own line to the entry: with several outputs, each gets a copy.
        const own = shared ? entry : { ...entry };
        const formatted = output.format === undefined ? own : output.format.transform(own, output.format.options);
        if (formatted !== false) output.log?.(formatted, ignore);
      } catch {
        // As base.on('error') above: an output that fails (stdout closed, say) must not fail the request.
      }
    }
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
