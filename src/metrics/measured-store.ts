import { Gauge } from 'prom-client';
import { EkmError, StoreUnavailableError } from '../errors.js';
import type { OwnerKeyLimits } from '../stores/owner-key-limits.js';
import type { Store, StoredKey, UpsertResult } from '../stores/store.js';
import { registry, storeOperationDuration, storeOperations } from './ekm-metrics.js';

/** Keys are counted at most this often: a count reads the whole table. */
const KEY_COUNT_INTERVAL_MS = 60_000;
/** A scrape probes the store itself when no operation told its state for this long. */
const STATE_FRESH_MS = 15_000;

let measured: MeasuredStore | undefined;

new Gauge({
  name: 'ekm_store_keys',
  help: 'Private keys in the store (database stores only), counted at most once a minute.',
  aggregator: 'max',
  registers: [registry],
  async collect() {
    const count = await measured?.keyCount();
    if (count !== undefined) this.set(count);
  },
});

/** The store's last known state in each worker; the cluster's value is the worst worker's. */
const storeUp = new Gauge({
  name: 'ekm_store_up',
  help: '1 when the key store answered the last operation (or probe), 0 when it was unavailable.',
  aggregator: 'min',
  registers: [registry],
  // Probed at scrape time when no request has told the state lately: an idle service that lost
  // its store must not go on reporting it up.
  async collect() {
    await measured?.probeIfStale();
  },
});

/**
 * A Store that counts and times every operation (`ekm_store_operations_total`,
 * `ekm_store_operation_duration_seconds`), keeps `ekm_store_up` and, for a store that can count,
 * `ekm_store_keys`. Wraps any store from outside: no store measures itself.
 */
export class MeasuredStore implements Store {
  readonly type: string;
  private lastOutcomeAt = 0;
  private counted: { at: number; count: Promise<number | undefined> } | undefined;

  constructor(private readonly inner: Store) {
    this.type = inner.type;
    // The process's store: the one the workers serve from (one per process).
    // A registry of the process's one store, not an alias for a closure.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    measured = this;
  }

  probe(): Promise<void> {
    return this.measure('probe', () => this.inner.probe());
  }

  /** Passed through unmeasured: /health's question, not a store operation. */
  async probeWrites(): Promise<'up' | 'unchecked'> {
    return (await this.inner.probeWrites?.()) ?? 'unchecked';
  }

  listByEmail(email: string): Promise<StoredKey[]> {
    return this.measure('list', () => this.inner.listByEmail(email));
  }

  listByKeyId(id: string): Promise<StoredKey[]> {
    return this.measure('listByKeyId', () => this.inner.listByKeyId(id));
  }

  upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    return this.measure('upsert', () => this.inner.upsert(key, limits));
  }

  delete(email: string, fingerprint: string): Promise<boolean> {
    return this.measure('delete', () => this.inner.delete(email, fingerprint));
  }

  all(): AsyncIterable<StoredKey> {
    return this.inner.all();
  }

  close(): Promise<void> {
    if (measured === this) measured = undefined;
    return this.inner.close();
  }

  /** Keys stored, when the store can count them; recounted at most once a minute. */
  keyCount(): Promise<number | undefined> {
    const count = this.inner.count?.bind(this.inner);
    if (count === undefined) return Promise.resolve(undefined);
    if (this.counted === undefined || Date.now() - this.counted.at >= KEY_COUNT_INTERVAL_MS) {
      this.counted = { at: Date.now(), count: this.measure('count', count).catch(() => undefined) };
    }
    return this.counted.count;
  }

  async probeIfStale(): Promise<void> {
    if (Date.now() - this.lastOutcomeAt < STATE_FRESH_MS) return;
    await this.probe().catch(() => {});
  }

  private async measure<T>(operation: string, run: () => Promise<T>): Promise<T> {
    const stop = storeOperationDuration.startTimer({ operation });
    try {
      const result = await run();
      storeOperations.inc({ operation, outcome: 'ok' });
      this.observeState(1);
      return result;
    } catch (e) {
      storeOperations.inc({ operation, outcome: e instanceof EkmError ? e.code : 'ERR_INTERNAL' });
      // A refusal (a fingerprint conflict) is the store answering: only an outage marks it down.
      this.observeState(e instanceof StoreUnavailableError ? 0 : 1);
      throw e;
    } finally {
      stop();
    }
  }

  private observeState(up: 0 | 1): void {
    this.lastOutcomeAt = Date.now();
    storeUp.set(up);
  }
}
