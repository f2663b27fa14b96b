// winston's own base class of transports (winston re-exports it at runtime, not in its types).
import TransportStream from 'winston-transport';

/** What a bounded output could not deliver since its last report; written to stdout by the logger. */
export interface LossReport {
  /** The `logger.types` name of the output, e.g. `SplunkHttpLogger`. */
  readonly output: string;
  /** Entries refused because the buffer was full (the destination is slower than the service). */
  readonly dropped: number;
  /** Entries handed to the destination that it did not accept (down, refused, timed out). */
  readonly failed: number;
  /** The last delivery error, without secrets (a network or collector message). */
  readonly lastError: string | undefined;
}

/** A record as winston hands it to a transport: plain fields plus winston's symbol keys. */
export type LogInfo = Record<string | symbol, unknown>;

/**
 * Sends records to a remote destination in one request; calls `done` once the destination has
 * answered (with the error if it refused or could not be reached: the whole batch counts as failed).
 */
export type DeliverFn = (batch: readonly LogInfo[], done: (error?: Error | null) => void) => void;

export interface BoundedOutputOptions {
  /** The `logger.types` name, for reports. */
  readonly output: string;
  readonly deliver: DeliverFn;
  /** Entries waiting for delivery before new ones are dropped. */
  readonly capacity?: number;
  /** Deliveries in flight at once. */
  readonly concurrency?: number;
  /**
   * Most records in one delivery. Records that queue up while deliveries are in flight go together
   * in the next one, so a busy service makes fewer, larger requests.
   */
  readonly maxBatch?: number;
  /**
   * How long a record may wait for others to share its delivery when nothing is in flight. A
   * request per record costs the service about as much CPU as the request it logs.
   */
  readonly lingerMs?: number;
  /** A delivery not answered within this is counted failed and frees its slot. */
  readonly deliveryTimeoutMs?: number;
  /** Minimum time between two loss reports. */
  readonly reportIntervalMs?: number;
  readonly onLoss: (report: LossReport) => void;
}

/**
 * A winston transport in front of a remote log destination (Splunk, Cloud Logging). winston pipes
 * its records into every transport as streams, so one slow transport would back up all of them
 * and, through the process's memory, the service: this one acknowledges each record at once, keeps
 * at most `capacity` records for a bounded number of concurrent deliveries (batches of up to
 * `maxBatch`), and counts what it had to drop or could not deliver, reported through `onLoss` at
 * most once per `reportIntervalMs`.
 * Logging never waits on the network and never throws into the caller.
 */
export class BoundedOutput extends TransportStream {
  readonly output: string;
  private readonly deliver: DeliverFn;
  private readonly capacity: number;
  private readonly concurrency: number;
  private readonly maxBatch: number;
  private readonly lingerMs: number;
  private lingerTimer: NodeJS.Timeout | undefined;
  private readonly deliveryTimeoutMs: number;
  private readonly reportIntervalMs: number;
  private readonly onLoss: (report: LossReport) => void;
  private readonly queue: LogInfo[] = [];
  /** Deliveries in flight, and the records they carry. */
  private inFlight = 0;
  private recordsInFlight = 0;
  private dropped = 0;
  private failed = 0;
  private lastError: string | undefined;
  private lastReportAt = 0;
  private reportTimer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  /** Totals since start, for tests and for the final report. */
  readonly totals = { accepted: 0, delivered: 0, dropped: 0, failed: 0 };

  constructor(options: BoundedOutputOptions) {
    super();
    this.output = options.output;
    this.deliver = options.deliver;
    this.capacity = options.capacity ?? 2000;
    this.concurrency = options.concurrency ?? 4;
    this.maxBatch = options.maxBatch ?? 1;
    this.lingerMs = options.lingerMs ?? 0;
    this.deliveryTimeoutMs = options.deliveryTimeoutMs ?? 10_000;
    this.reportIntervalMs = options.reportIntervalMs ?? 60_000;
    this.onLoss = options.onLoss;
  }

  override log(info: LogInfo, next: () => void): void {
    if (this.queue.length >= this.capacity) {
      this.dropped++;
      this.totals.dropped++;
      this.scheduleReport();
    } else {
      // Copied: winston hands the same object to every transport, and formats mutate it.
      this.queue.push({ ...info });
      this.totals.accepted++;
      if (this.lingerMs <= 0 || this.queue.length >= this.maxBatch) {
        this.pump();
      } else if (this.lingerTimer === undefined) {
        this.lingerTimer = setTimeout(() => this.pump(), this.lingerMs);
        this.lingerTimer.unref();
      }
    }
    next();
  }

  /** Entries waiting or in flight. */
  get pending(): number {
    return this.queue.length + this.recordsInFlight;
  }

  /**
   * Waits until every accepted entry has been delivered or failed, at most `timeoutMs`; then reports
   * what was lost, including what is still pending (it will not be delivered before exit).
   */
  async drain(timeoutMs: number): Promise<void> {
    this.pump();
    if (this.pending > 0) {
      await new Promise<void>((resolve) => {
        // Not unref'd: the caller is waiting for this before exit.
        const timer = setTimeout(resolve, timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const unsent = this.queue.length;
    this.queue.length = 0;
    this.dropped += unsent;
    this.totals.dropped += unsent;
    this.report();
  }

  override close(): void {
    if (this.reportTimer !== undefined) clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
  }

  private pump(): void {
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    while (this.inFlight < this.concurrency && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      this.recordsInFlight += batch.length;
      let settled = false;
      const settle = (error?: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.inFlight--;
        this.recordsInFlight -= batch.length;
        if (error) {
          this.failed += batch.length;
          this.totals.failed += batch.length;
          this.lastError = describeError(error);
          this.scheduleReport();
        } else {
          this.totals.delivered += batch.length;
        }
        this.pump();
        if (this.pending === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const wake of waiters) wake();
        }
      };
      const timer = setTimeout(() => settle(new Error(`no answer within ${this.deliveryTimeoutMs} ms`)), this.deliveryTimeoutMs);
      timer.unref();
      try {
        this.deliver(batch, settle);
      } catch (error) {
        settle(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  private scheduleReport(): void {
    if (this.reportTimer !== undefined) return;
    const wait = Math.max(0, this.lastReportAt + this.reportIntervalMs - Date.now());
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      this.report();
    }, wait);
    this.reportTimer.unref();
  }

  private report(): void {
    if (this.dropped === 0 && this.failed === 0) return;
    const report: LossReport = { output: this.output, dropped: this.dropped, failed: this.failed, lastError: this.lastError };
    this.dropped = 0;
    this.failed = 0;
    this.lastReportAt = Date.now();
    try {
      this.onLoss(report);
    } catch {
      // A failing report must not break logging; the next one will carry on counting.
    }
  }
}

/** An error's message as one short line; delivery errors come from sockets, TLS and collectors. */
function describeError(error: Error): string {
  const code = (error as { code?: unknown }).code;
  const text = `${typeof code === 'string' || typeof code === 'number' ? `${code}: ` : ''}${error.message}`;
  return text.replace(/\s+/g, ' ').slice(0, 300);
}
