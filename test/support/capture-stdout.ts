interface ConsoleStreams { _stdout: { write: (chunk: string | Uint8Array, ...rest: unknown[]) => boolean } }

/**
 * What StdoutLogger writes between start() and stop(). winston's Console transport writes to
 * `console._stdout` (which Node maps to process.stdout); that one reference is replaced, so the test
 * runner's own reports on process.stdout are untouched. Lines that are not JSON records (console.log
 * in a test) are passed on.
 */
export class StdoutCapture {
  readonly lines: string[] = [];
  /** Lines that were not JSON: passed on to the real stdout, and kept here. */
  readonly otherLines: string[] = [];
  private original: ConsoleStreams['_stdout'] | undefined;

  start(): this {
    const streams = console as unknown as ConsoleStreams;
    const original = streams._stdout;
    this.original = original;
    let partial = '';
    // Inherits everything else (console.log also calls once/removeListener) from the real stream.
    const fake = Object.create(original) as ConsoleStreams['_stdout'];
    Object.assign(fake, {
      write: (chunk: string | Uint8Array, ...rest: unknown[]) => {
        partial += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
        const parts = partial.split('\n');
        partial = parts.pop() ?? '';
        for (const line of parts) {
          if (line.startsWith('{')) this.lines.push(line);
          else {
            this.otherLines.push(line);
            original.write(`${line}\n`);
          }
        }
        const done = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
        if (done) queueMicrotask(done);
        return true;
      },
    });
    streams._stdout = fake;
    return this;
  }

  stop(): void {
    if (this.original) (console as unknown as ConsoleStreams)._stdout = this.original;
  }

  /** The captured JSON records (StdoutLogger when stdout is not a terminal). */
  get records(): Record<string, unknown>[] {
    return this.lines.flatMap((line) => {
      try {
        const value: unknown = JSON.parse(line);
        return isRecord(value) ? [value] : [];
      } catch {
        return [];
      }
    });
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;
