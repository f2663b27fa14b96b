import { KeyLimitError } from '../errors.js';
import type { StoredKey } from './store.js';

/** What one user may hold (`api.keys.max.per.user`, `api.keys.max.bytes.per.user`). */
export interface OwnerKeyLimits {
  /** The most keys (fingerprints) one owner may hold. */
  readonly maxKeys: number;
  /** The most bytes of armored private keys (UTF-8) one owner may hold. */
  readonly maxBytes: number;
}

/**
 * Refuses (KeyLimitError) storing `key` when its owner, now holding `held`, would go past the limits.
 * Why per user: every key a user holds is parsed and served to anonymous Web Key Directory and
 * public-key clients, so an unbounded user is a lever on everyone else's latency.
 * - A new fingerprint counts against both limits.
 * - An update of a fingerprint the owner already holds never counts against the number of keys (a
 *   revocation or a new expiry must always get through) and counts only its growth against the
 *   bytes: an update that does not grow the key is accepted even by an owner over the budget (for
 *   example after the operator lowered it).
 * Each store calls this where it can see the owner's keys and write in one step; see Store.upsert.
 */
export function checkOwnerKeyLimits(held: readonly Pick<StoredKey, 'fingerprint' | 'privateKey'>[], key: StoredKey, limits: OwnerKeyLimits): void {
  const size = (k: Pick<StoredKey, 'privateKey'>) => Buffer.byteLength(k.privateKey, 'utf8');
  const previous = held.find((k) => k.fingerprint === key.fingerprint);
  if (previous === undefined && held.length >= limits.maxKeys) {
    throw new KeyLimitError(
      'ERR_KEY_COUNT_LIMIT',
      `at most ${limits.maxKeys} keys per user: ask your administrator to remove old ones`,
      `${key.email} holds ${held.length} keys; api.keys.max.per.user is ${limits.maxKeys}`,
    );
  }
  const growth = size(key) - (previous === undefined ? 0 : size(previous));
  if (growth <= 0) return;
  const total = held.reduce((sum, k) => sum + size(k), 0);
  if (total + growth > limits.maxBytes) {
    throw new KeyLimitError(
      'ERR_KEY_BYTES_LIMIT',
      `at most ${limits.maxBytes} bytes of keys per user: ask your administrator to remove old ones`,
      `${key.email} holds ${total} bytes of keys and this key would add ${growth}; api.keys.max.bytes.per.user is ${limits.maxBytes}`,
    );
  }
}
