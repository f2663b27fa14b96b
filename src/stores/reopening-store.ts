import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { OwnerKeyLimits } from './owner-key-limits.js';
import type { Store, StoredKey, UpsertResult } from './store.js';

/** How often a store that could not be opened is tried again, at most. */
const REOPEN_INTERVAL_MS = 1000;

/**
 * A store that could not be opened because its backend was unreachable (StoreUnavailableError):
 * a worker serves with this instead of failing at start, so an outage never counts as a crash.
 * Every operation answers 503 with the reason until an attempt to open the store, made at most
 * once per REOPEN_INTERVAL_MS when a request comes, succeeds; from then on it is the store.
 */
export class ReopeningStore implements Store {
  private store: Store | undefined;
  private failure: StoreUnavailableError;
  private lastAttempt = performance.now();
  private opening: Promise<Store> | undefined;
  private closed = false;

  constructor(
    readonly type: string,
    private readonly openStore: () => Promise<Store>,
    firstFailure: StoreUnavailableError,
  ) {
    this.failure = firstFailure;
  }

  async probe(): Promise<void> {
    return (await this.current()).probe();
  }

  async probeWrites(): Promise<'up' | 'unchecked'> {
    return (await this.current()).probeWrites?.() ?? 'unchecked';
  }

  async listByEmail(email: string): Promise<StoredKey[]> {
    return (await this.current()).listByEmail(email);
  }

  async listByKeyId(id: string): Promise<StoredKey[]> {
    return (await this.current()).listByKeyId(id);
  }

  async upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    return (await this.current()).upsert(key, limits);
  }

  async delete(email: string, fingerprint: string): Promise<boolean> {
    return (await this.current()).delete(email, fingerprint);
  }

  async *all(): AsyncIterable<StoredKey> {
    yield* (await this.current()).all();
  }

  async close(): Promise<void> {
    this.closed = true;
    const store = this.store ?? (await this.opening?.catch(() => undefined));
    await store?.close();
  }

  private async current(): Promise<Store> {
    if (this.store !== undefined) return this.store;
    if (this.opening === undefined && !this.closed && performance.now() - this.lastAttempt >= REOPEN_INTERVAL_MS) {
      this.lastAttempt = performance.now();
      this.opening = this.openStore().finally(() => (this.opening = undefined));
    }
    if (this.opening === undefined) throw this.failure;
    try {
      this.store = await this.opening;
      return this.store;
    } catch (e) {
      // A ConfigError now (a damaged file, a changed passphrase) is still no reason to stop serving.
      this.failure = e instanceof StoreUnavailableError ? e : new StoreUnavailableError(e instanceof ConfigError ? e.message : 'Opening the store failed');
      throw this.failure;
    }
  }
}
