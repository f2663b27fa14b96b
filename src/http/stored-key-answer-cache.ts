import { createHash } from 'node:crypto';
import type { StoredKey } from '../stores/store.js';

/** Bounds of one cache: its entries, and the bytes of their answers. */
export interface AnswerCacheLimits {
  readonly maxEntries: number;
  readonly maxBytes: number;
}

/**
 * Answers derived from stored keys (the Web Key Directory's binary keys, the public-key GET's JSON
 * body), kept by the content of the records they were derived from, so that an anonymous flood on
 * one user costs a store lookup, not an OpenPGP parse or a megabyte of JSON.
 *
 * Content addressing is what makes it sound across workers and hosts without any message between
 * them: the store is still asked on every request (it is cheap: EncryptedDbStore keeps recent reads
 * while SQLite's data_version is unchanged), and the answer is looked up by a hash of the records it
 * returned. A write anywhere changes the records, hence the key, and the stale entry is never read
 * again; a deletion removes the record from the key; an entry nobody asks for ages out of the LRU.
 * Nothing here can serve a key the store no longer returns.
 *
 * Bounded in entries and bytes (least recently used first out); an address without keys is never
 * held (anonymous clients choose addresses freely, so only stored keys may take places); an answer larger than an eighth of
 * the byte bound is built every time rather than evicting everything else. Concurrent misses of one
 * key share one build.
 */
export class StoredKeyAnswerCache {
  private readonly answers = new Map<string, Buffer>();
  private readonly building = new Map<string, Promise<Buffer>>();
  /** Each frozen record's digest, so that the store's own recent reads (the same objects) are not hashed again. */
  private readonly digests = new WeakMap<StoredKey, string>();
  private bytes = 0;

  constructor(private readonly limits: AnswerCacheLimits) {}

  /** The answer for `keys` under `scope` (what else the answer depends on, e.g. the requested email), built by `build` on a miss. */
  async answer(scope: string, keys: readonly StoredKey[], build: () => Promise<Buffer>): Promise<Buffer> {
    // No keys, nothing to parse: anyone can ask for any address, and those answers must not evict real ones.
    if (keys.length === 0) return build();
    const key = `${scope}\u0000${keys.map((k) => this.digest(k)).join(',')}`;
    const known = this.answers.get(key);
    if (known !== undefined) {
      this.answers.delete(key);
      this.answers.set(key, known);
      return known;
    }
    const pending = this.building.get(key);
    if (pending !== undefined) return pending;
    const built = build().finally(() => this.building.delete(key));
    this.building.set(key, built);
    const answer = await built;
    this.remember(key, answer);
    return answer;
  }

  /** How many answers are held, and their bytes (for tests and diagnostics). */
  get size(): { readonly entries: number; readonly bytes: number } {
    return { entries: this.answers.size, bytes: this.bytes };
  }

  private remember(key: string, answer: Buffer): void {
    if (this.answers.has(key) || answer.length > this.limits.maxBytes / 8) return;
    this.answers.set(key, answer);
    this.bytes += answer.length;
    while (this.answers.size > this.limits.maxEntries || this.bytes > this.limits.maxBytes) {
      const [oldest, evicted] = this.answers.entries().next().value!;
      this.answers.delete(oldest);
      this.bytes -= evicted.length;
    }
  }

  private digest(key: StoredKey): string {
    const known = this.digests.get(key);
    if (known !== undefined) return known;
    // Every field an answer may be derived from; \u0000 cannot occur in any of them.
    const digest = createHash('sha256').update(`${key.email}\u0000${key.fingerprint}\u0000${key.publicKey}`).digest('base64');
    // Only a frozen record cannot change under its digest (EncryptedDbStore freezes what it returns).
    if (Object.isFrozen(key)) this.digests.set(key, digest);
    return digest;
  }
}
