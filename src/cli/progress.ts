/** Redraws at most this often. */
const INTERVAL_MS = 100;

/**
 * A one-line progress display for long commands (`--export`, `--import` of large stores). Draws
 * only when the stream is a terminal; elsewhere (journald, CI, a pipe) it stays silent and the
 * command prints its summary line alone.
 */
export class Progress {
  private last = 0;
  private drawn = false;

  constructor(private readonly stream: NodeJS.WritableStream & { isTTY?: boolean }) {}

  /** Shows `text` (e.g. "Importing 120/1000 (12%)"), throttled; `force` draws now. */
  update(text: string, force = false): void {
    if (this.stream.isTTY !== true) return;
    const now = Date.now();
    if (!force && now - this.last < INTERVAL_MS) return;
    this.last = now;
    this.stream.write(`\r\x1b[2K${text}`);
    this.drawn = true;
  }

  /** Erases the line, before other output or at the end. */
  clear(): void {
    if (!this.drawn) return;
    this.stream.write('\r\x1b[2K');
    this.drawn = false;
    // Redraw at the next update: a command that clears before each of its own lines would
    // otherwise leave the line blank for most of every interval.
    this.last = 0;
  }
}
