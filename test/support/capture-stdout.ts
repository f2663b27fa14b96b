/** Lines written to process.stdout between start() and stop(), kept from the terminal unless `echo`. */
export class StdoutCapture {
  readonly lines: string[] = [];
  private readonly original = process.stdout.write;

  constructor(private readonly echo = false) {}

  start(): this {
    const original = this.original;
    let partial = '';
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      partial += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      this.lines.push(...parts);
      if (!this.echo) {
        const done = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
        if (done) queueMicrotask(done);
        return true;
      }
      return (original as (...args: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
    }) as typeof process.stdout.write;
    return this;
  }

  stop(): void {
    process.stdout.write = this.original;
  }

  /** The captured lines that are JSON objects (StdoutLogger when stdout is not a terminal). */
  get records(): Record<string, unknown>[] {
    return this.lines.flatMap((line) => {
      try {
        const value: unknown = JSON.parse(line);
        return typeof value === 'object' && value !== null ? [value as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  }
}
