import type { Logger } from '../logging/logger.js';
import type { OwnerKeyLimits } from './owner-key-limits.js';

/** One stored private key, as it leaves and enters a store (decrypted; never logged). */
export interface StoredKey {
  /** The owner's email, normalised by keys/email-address.ts. */
  readonly email: string;
  /** OpenPGP v4/v6 fingerprint, uppercase hex. */
  readonly fingerprint: string;
  /** The armored, decrypted private key. */
  readonly privateKey: string;
  /** The armored public key derived from it. */
  readonly publicKey: string;
}

export type UpsertResult = 'added' | 'updated' | 'unchanged';

/**
 * Where keys live. Every method either does what it says or throws: StoreUnavailableError (503) when
 * the backend cannot be reached or read, StoreReadOnlyError (503) from upsert and delete when it can
 * be read but not written, FingerprintConflictError (409) from upsert. A method never
 * answers "nothing" because the backend failed: clients delete keys the EKM does not return.
 * Safe with one process per CPU using the same backend at once; nothing is cached that could serve
 * a deleted key.
 */
export interface Store {
  /** The config name of this store, e.g. `EncryptedDbStore`. */
  readonly type: string;
  /** One real round trip to the backend (a LOCATE or equivalent); resolves when it succeeded. */
  probe(): Promise<void>;
  /**
   * Whether a write could succeed now, for /health, without writing a key: 'up', or 'unchecked'
   * from a store that cannot tell cheaply; throws StoreReadOnlyError naming the cause (read-only
   * filesystem, permission, full disk) when writes would fail. Absent: 'unchecked' (Pkcs11Store,
   * KmipStore: neither protocol tells whether a write would succeed short of making one).
   */
  probeWrites?(): Promise<'up' | 'unchecked'>;
  /** The keys stored for this email (normalised by the caller: keys/email-address.ts), in insertion order. */
  listByEmail(email: string): Promise<StoredKey[]>;
  /**
   * The keys answering to this key id (uppercase hex, see src/keys/key-ids.ts): a fingerprint, or
   * the long id of a primary key or subkey. Found through an index, never by reading every key.
   */
  listByKeyId(id: string): Promise<StoredKey[]>;
  /**
   * Adds the key, or replaces the key of the same fingerprint of the same owner.
   * Throws FingerprintConflictError when the fingerprint belongs to another email, KeyLimitError
   * when `limits` are given and the owner would go past them (checkOwnerKeyLimits). Where the
   * backend allows, the check and the write are one step, so that concurrent writers cannot
   * together go past the limits; each store says how far that holds.
   */
  upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult>;
  /** Deletes the key of this email and fingerprint; false when there was none. */
  delete(email: string, fingerprint: string): Promise<boolean>;
  /**
   * How many keys are stored, for the metrics; only stores that can count cheaply (a database)
   * implement it: on an HSM or key server it would walk every object.
   */
  count?(): Promise<number>;
  /** Every stored key, for export. */
  all(): AsyncIterable<StoredKey>;
  /** Releases connections and handles; the store is unusable afterwards. */
  close(): Promise<void>;
}

/** What every store factory receives besides its own section of the config. */
export interface StoreDependencies {
  readonly logger: Logger;
  /**
   * True when an operator command opens the store (`--test-store-connection`, `--import`): it may
   * create the bookkeeping a new backend lacks (e.g. the KMIP index key). False when serving, so a
   * host that cannot see the deployment's objects answers 503 rather than an empty key list.
   */
  readonly setup?: boolean;
}
