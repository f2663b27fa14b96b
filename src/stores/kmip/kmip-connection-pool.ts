import { KmipConnection, type KmipEndpoint } from './kmip-connection.js';
import { KmipUnavailableError } from './kmip-errors.js';

/** How the pool behaves; every wait is bounded so a dead server becomes an error, not a hang. */
export interface KmipPoolOptions {
  /** Connections per process; each carries one request at a time. */
  readonly maxConnections: number;
  /** TCP connect and TLS handshake, in ms. */
  readonly connectTimeoutMs: number;
  /** A whole request from the caller's point of view (waiting for a connection, connecting, answer), in ms. */
  readonly requestTimeoutMs: number;
  /** An idle connection is closed after this long, in ms (servers drop idle sessions on their own). */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_POOL_OPTIONS: KmipPoolOptions = {
  maxConnections: 4,
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
};

interface Idle {
  readonly connection: KmipConnection;
  readonly timer: NodeJS.Timeout;
}

/**
 * A small pool of KMIP connections, because a TLS handshake costs more than a KMIP round trip.
 * A connection goes back to the pool only after a complete, readable answer; after a timeout, a
 * socket error or an answer that does not parse it is destroyed.
 */
export class KmipConnectionPool {
  private readonly idle: Idle[] = [];
  private readonly waiters: ((ready: boolean) => void)[] = [];
  /** Connections open or being opened, idle or busy. */
  private size = 0;
  private closed = false;

  constructor(
    private readonly endpoint: KmipEndpoint,
    private readonly options: KmipPoolOptions,
  ) {}

  /**
   * Sends one encoded request and returns `parse` of its answer. A request that only reads may be
   * repeated once on a fresh connection when a pooled one turns out to be dead (the server restarted
   * or dropped it while idle); a write never is, since it may have been carried out.
   */
  async send<T>(message: Buffer, readOnly: boolean, parse: (response: Buffer) => T): Promise<T> {
    const deadline = Date.now() + this.options.requestTimeoutMs;
    const first = await this.acquire(deadline, false);
    try {
      return await this.exchange(first.connection, message, deadline, parse);
    } catch (e) {
      const retry = first.reused && e instanceof KmipUnavailableError && (readOnly || !e.maybeSent) && !this.closed && Date.now() < deadline;
      if (!retry) throw e;
    }
    const second = await this.acquire(deadline, true);
    return this.exchange(second.connection, message, deadline, parse);
  }

  /** Closes every connection; pending and later requests fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const { connection, timer } of this.idle.splice(0)) {
      clearTimeout(timer);
      connection.destroy();
    }
    for (const waiter of this.waiters.splice(0)) waiter(false);
  }

  private async exchange<T>(connection: KmipConnection, message: Buffer, deadline: number, parse: (response: Buffer) => T): Promise<T> {
    let result: T;
    try {
      const response = await connection.request(message, Math.max(1, deadline - Date.now()));
      result = parse(response);
    } catch (e) {
      connection.destroy();
      throw e;
    }
    this.release(connection);
    return result;
  }

  private async acquire(deadline: number, fresh: boolean): Promise<{ connection: KmipConnection; reused: boolean }> {
    for (;;) {
      if (this.closed) throw new KmipUnavailableError('The KMIP store is closed', false);
      if (!fresh) {
        const idle = this.idle.pop();
        if (idle !== undefined) {
          clearTimeout(idle.timer);
          if (idle.connection.usable) return { connection: idle.connection, reused: true };
          continue;
        }
      } else if (this.size >= this.options.maxConnections && this.idle.length > 0) {
        // A retry wants a new connection: make room by closing the oldest idle one.
        const oldest = this.idle.shift()!;
        clearTimeout(oldest.timer);
        oldest.connection.destroy();
        continue;
      }
      if (this.size < this.options.maxConnections) return { connection: await this.connect(deadline), reused: false };
      const remaining = deadline - Date.now();
      if (remaining <= 0 || !(await this.waitForRelease(remaining))) {
        throw new KmipUnavailableError(
          `No KMIP connection became free within ${this.options.requestTimeoutMs} ms (all ${this.options.maxConnections} busy: the server is slow or unreachable)`,
          false,
        );
      }
    }
  }

  private async connect(deadline: number): Promise<KmipConnection> {
    this.size++;
    let connection: KmipConnection;
    try {
      connection = await KmipConnection.open(this.endpoint, Math.max(1, Math.min(this.options.connectTimeoutMs, deadline - Date.now())));
    } catch (e) {
      this.size--;
      this.wakeOne();
      throw e;
    }
    connection.onClose(() => {
      this.size--;
      const at = this.idle.findIndex((i) => i.connection === connection);
      if (at >= 0) clearTimeout(this.idle.splice(at, 1)[0]!.timer);
      this.wakeOne();
    });
    return connection;
  }

  private release(connection: KmipConnection): void {
    if (this.closed || !connection.usable) {
      connection.destroy();
      return;
    }
    const timer = setTimeout(() => connection.destroy(), this.options.idleTimeoutMs);
    timer.unref();
    this.idle.push({ connection, timer });
    this.wakeOne();
  }

  private wakeOne(): void {
    this.waiters.shift()?.(true);
  }

  private waitForRelease(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const waiter = (ready: boolean) => {
        clearTimeout(timer);
        resolve(ready);
      };
      const timer = setTimeout(() => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }
}
