import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { ConfigError, StoreUnavailableError } from '../errors.js';

/**
 * The keys of EncryptedDbStore and how they are kept (`--rotate-store-key`).
 *
 * Each key generation has a 32-byte secret; its record key and index key come from it by HKDF.
 * Generation 0 is what every database had before rotation existed: its secret is the scrypt
 * output of the passphrase itself. A rotation makes generation n+1 with a random secret and keeps
 * it, in the meta row `keyring`, wrapped three ways while it runs:
 * - under the new passphrase (scrypt with a new salt, then HKDF to a wrapping key), which is what
 *   remains when it finishes;
 * - under generation n's record key, so that every running process, which holds generation n,
 *   learns generation n+1 from the store without a restart;
 * - and generation n's secret under generation n+1's record key, so that a process started with
 *   the new passphrase mid-rotation reads the rows not yet re-encrypted.
 * When every row is re-encrypted, the keyring keeps only generation n+1 under the new passphrase
 * and `kdf` takes the new salt: the old passphrase opens nothing any more.
 */

/** scrypt cost: about 100 ms and 32 MiB on one core, paid once per process at start. */
export const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;

export interface KdfParams {
  readonly alg: 'scrypt';
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly maxmem: number;
  readonly salt: string;
}

/** One generation's keys. */
export interface GenerationKeys {
  readonly gen: number;
  readonly secret: Buffer;
  /** AES-256-GCM key of the records (and the key-check value). */
  readonly encryption: Buffer;
  /** HMAC-SHA256 key of the owner, fingerprint (and key id) hashes. */
  readonly index: Buffer;
}

/** The meta row `keyring`, absent while only generation 0 exists. */
export interface KeyringDoc {
  readonly v: 1;
  /** The generation rows are in once no rotation runs; its secret under the passphrase (absent for generation 0: the passphrase's own). */
  readonly current: { readonly gen: number; readonly byPassphrase?: string };
  /** A rotation under way. */
  readonly next?: {
    readonly gen: number;
    readonly kdf: KdfParams;
    readonly byPassphrase: string;
    readonly byCurrent: string;
    readonly currentByNext: string;
    /** When the rotation started (ms since the epoch): it ends no sooner than a grace period later. */
    readonly startedAt: number;
  };
}

export function newKdf(): KdfParams {
  return { alg: 'scrypt', ...SCRYPT, salt: randomBytes(32).toString('base64') };
}

export function parseKdf(bytes: Buffer): KdfParams {
  return JSON.parse(bytes.toString()) as KdfParams;
}

/** The passphrase's 32-byte scrypt output: generation 0's secret, and the root of the wrapping key. */
export function passphraseSecret(passphrase: string, kdf: KdfParams): Buffer {
  return scryptSync(passphrase, Buffer.from(kdf.salt, 'base64'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: kdf.maxmem });
}

export function generationKeys(gen: number, secret: Buffer): GenerationKeys {
  return {
    gen,
    secret,
    encryption: Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'ekm record encryption', 32)),
    index: Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'ekm index hmac', 32)),
  };
}

function wrappingKey(passphraseOutput: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', passphraseOutput, Buffer.alloc(0), 'ekm key wrapping', 32));
}

/** AES-256-GCM of a secret, bound by AAD to what it is (`purpose`), as base64 of iv, ciphertext and tag. */
export function wrap(key: Buffer, secret: Buffer, purpose: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(`ekm keyring ${purpose}`));
  return Buffer.concat([iv, cipher.update(secret), cipher.final(), cipher.getAuthTag()]).toString('base64');
}

/** undefined when the key is not the one it was wrapped under. */
export function unwrap(key: Buffer, wrapped: string, purpose: string): Buffer | undefined {
  const bytes = Buffer.from(wrapped, 'base64');
  if (bytes.length !== 12 + 32 + 16) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
  decipher.setAAD(Buffer.from(`ekm keyring ${purpose}`));
  decipher.setAuthTag(bytes.subarray(12 + 32));
  try {
    return Buffer.concat([decipher.update(bytes.subarray(12, 12 + 32)), decipher.final()]);
  } catch {
    return undefined;
  }
}

export function parseKeyring(bytes: Buffer | undefined): KeyringDoc | undefined {
  if (bytes === undefined) return undefined;
  // Read as what it may be: another version's keyring, or damaged.
  const doc = JSON.parse(bytes.toString()) as { v?: unknown; current?: { gen?: unknown } } | null;
  if (doc?.v !== 1 || !Number.isInteger(doc.current?.gen))
    throw new StoreUnavailableError('The keyring of the database is of a format this version does not read');
  return doc as KeyringDoc;
}

/** The generations a passphrase opens, the newest last; undefined when it opens none. */
export function unlockWithPassphrase(passphrase: string, kdf: KdfParams, doc: KeyringDoc | undefined): GenerationKeys[] | undefined {
  const output = passphraseSecret(passphrase, kdf);
  const current = doc?.current.byPassphrase === undefined ? output : unwrap(wrappingKey(output), doc.current.byPassphrase, `passphrase ${doc.current.gen}`);
  if (current !== undefined) {
    const keys = generationKeys(doc?.current.gen ?? 0, current);
    if (doc?.next === undefined) return [keys];
    const next = unwrapNext(doc, keys);
    if (next !== undefined) return [keys, next];
    // Generation 0's secret is whatever scrypt gives (only the key-check value tells the right
    // passphrase): one that does not open the new generation is not the old passphrase.
    if (doc.current.byPassphrase !== undefined) throw damaged();
  }
  if (doc?.next === undefined) return undefined;
  // Started with the new passphrase while the rotation runs.
  const next = unwrap(wrappingKey(passphraseSecret(passphrase, doc.next.kdf)), doc.next.byPassphrase, `passphrase ${doc.next.gen}`);
  if (next === undefined) return undefined;
  const nextKeys = generationKeys(doc.next.gen, next);
  const previous = unwrap(nextKeys.encryption, doc.next.currentByNext, `generation ${doc.current.gen} under ${doc.next.gen}`);
  if (previous === undefined) throw damaged();
  return [generationKeys(doc.current.gen, previous), nextKeys];
}

/** The rotation's new generation, from the current one a running process holds. */
export function learnNext(doc: KeyringDoc, current: GenerationKeys): GenerationKeys {
  const next = unwrapNext(doc, current);
  if (next === undefined) throw damaged();
  return next;
}

function unwrapNext(doc: KeyringDoc, current: GenerationKeys): GenerationKeys | undefined {
  const next = doc.next!;
  const secret = unwrap(current.encryption, next.byCurrent, `generation ${next.gen} under ${current.gen}`);
  return secret === undefined ? undefined : generationKeys(next.gen, secret);
}

/** A rotation from `current` to a new random generation, its secret under `newPassphrase`. */
export function startRotation(
  doc: KeyringDoc | undefined,
  current: GenerationKeys,
  newPassphrase: string,
  now: number,
): { doc: KeyringDoc; next: GenerationKeys } {
  const kdf = newKdf();
  const next = generationKeys(current.gen + 1, randomBytes(32));
  const started: KeyringDoc = {
    v: 1,
    current: doc?.current ?? { gen: 0 },
    next: {
      gen: next.gen,
      kdf,
      byPassphrase: wrap(wrappingKey(passphraseSecret(newPassphrase, kdf)), next.secret, `passphrase ${next.gen}`),
      byCurrent: wrap(current.encryption, next.secret, `generation ${next.gen} under ${current.gen}`),
      currentByNext: wrap(next.encryption, current.secret, `generation ${current.gen} under ${next.gen}`),
      startedAt: now,
    },
  };
  return { doc: started, next };
}

/** Whether `newPassphrase` is the one the rotation under way was started with. */
export function opensNext(doc: KeyringDoc, newPassphrase: string): boolean {
  const next = doc.next!;
  return unwrap(wrappingKey(passphraseSecret(newPassphrase, next.kdf)), next.byPassphrase, `passphrase ${next.gen}`) !== undefined;
}

/** The keyring once every row is in the new generation: only its passphrase wrap remains. */
export function finishRotation(doc: KeyringDoc): { doc: KeyringDoc; kdf: KdfParams } {
  const next = doc.next!;
  return { doc: { v: 1, current: { gen: next.gen, byPassphrase: next.byPassphrase } }, kdf: next.kdf };
}

function damaged(): StoreUnavailableError {
  return new StoreUnavailableError('The keyring of the database failed its integrity check; the database may be damaged or tampered with');
}

export function wrongPassphrase(folder: string): ConfigError {
  return new ConfigError(`store.db.encryption.key does not open the database in ${folder}: wrong passphrase (nothing was changed)`);
}
