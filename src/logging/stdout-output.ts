import winston from 'winston';
import TransportStream from 'winston-transport';
import type { LoggerConfig } from '../config/config.js';

export interface StdoutOutputOptions {
  /**
   * Write the lines of one event-loop turn together, at its end, instead of one write(2) per line.
   * For the service's workers: a key fetch writes two entries (access line and audit entry), and a
   * system call per line cost more than the key lookup. The lines are written before the next turn
   * starts, at exit, and by `logger.flush()`. Command-line runs write each line at once, so that
   * their log lines and their own output stay in order.
   */
  readonly batched?: boolean | undefined;
}

/**
 * StdoutLogger: one JSON object per line when stdout is not a terminal (journald, docker, files),
 * readable lines on a terminal. Every level goes to stdout; journald tells levels apart by the JSON
 * field.
 */
export function createStdoutOutput(_config: LoggerConfig, options: StdoutOutputOptions = {}): winston.transport {
  const readable = winston.format.printf((info) => {
    const { level, message, time, worker, requestId, ...fields } = info as Record<string, unknown>;
    const request = typeof requestId === 'string' ? ` [${requestId}]` : '';
    const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    return `${String(time)} ${String(level).toUpperCase().padEnd(5)} [${String(worker)}]${request} ${String(message)}${rest}`;
  });
  return new StdoutOutput(process.stdout.isTTY ? readable : jsonLine(), options.batched === true);
}

const MESSAGE = Symbol.for('message');

/**
 * One JSON object per line, its keys in the entry's order (the logger puts time, level, message and
 * worker first). Entries hold LogFields: no nested objects, cycles or bigints, so plain
 * JSON.stringify does; winston.format.json() configures a new serializer for every entry and calls
 * a replacer for every value, which cost about a tenth of a key fetch's CPU.
 */
const jsonLine = winston.format((info) => {
  (info as unknown as Record<symbol, string>)[MESSAGE] = JSON.stringify(info);
  return info;
});

/**
 * Writes each entry's formatted line (what the format put under winston's MESSAGE key). Unlike
 * winston's Console transport it schedules no 'logged' event per entry, which nothing here listens to.
 */
class StdoutOutput extends TransportStream {
  constructor(
    format: ReturnType<typeof winston.format.printf>,
    private readonly batched: boolean,
  ) {
    super({ format });
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    const line = `${String(info[MESSAGE])}\n`;
    if (this.batched) stdoutBatch.add(line);
    else writeStdout(line);
    next();
  }

  override _final(done: (error?: Error | null) => void): void {
    stdoutBatch.flush();
    done();
  }
}

/**
 * Where the lines go: winston's Console transport writes to `console._stdout`, which Node points at
 * process.stdout; so does this, so that whatever redirects one redirects both. A write that fails
 * (stdout closed) is dropped: logging must not fail the request.
 */
function writeStdout(text: string): void {
  const out = (console as unknown as { _stdout?: NodeJS.WritableStream })._stdout ?? process.stdout;
  try {
    out.write(text);
  } catch {
    // See above.
  }
}

/** Above this many pending characters a batch is written at once, whatever the turn. */
const BATCH_MAX_CHARS = 64 * 1024;

/** The process's pending lines: one stdout, so one batch shared by every batched output, in order. */
const stdoutBatch = new (class {
  private lines: string[] = [];
  private chars = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private exitHooked = false;

  add(line: string): void {
    this.lines.push(line);
    this.chars += line.length;
    if (this.chars >= BATCH_MAX_CHARS) this.flush();
    else if (this.scheduled === undefined) {
      this.scheduled = setImmediate(() => this.flush());
      if (!this.exitHooked) {
        this.exitHooked = true;
        process.on('exit', () => this.flush());
      }
    }
  }

  flush(): void {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    if (this.lines.length === 0) return;
    const text = this.lines.join('');
    this.lines = [];
    this.chars = 0;
    writeStdout(text);
  }
})();
