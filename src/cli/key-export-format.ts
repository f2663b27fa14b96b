import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { StoredKey } from '../stores/store.js';

/**
 * The file `--export` writes and `--import` reads. JSON, one of two shapes:
 *
 * Plain (holds decrypted private keys):
 *   {"format":"flowcrypt-ekm-keys","version":1,"exportedAt":ISO date,"orgId":..., "store":...,
 *    "keys":[{"email","fingerprint","privateKey","publicKey"}, ...]}
 *
 * Encrypted to a passphrase (`--export-passphrase-file`): the plain document's UTF-8 bytes sealed
 * with AES-256-GCM under a key derived by scrypt (RFC 7914) from the passphrase and a random salt;
 * the header (format, version, kdf, cipher) is the GCM additional data, so no parameter can be
 * changed without the tag failing:
 *   {"format":"flowcrypt-ekm-keys-encrypted","version":1,
 *    "kdf":{"algorithm":"scrypt","N":131072,"r":8,"p":1,"salt":base64},
 *    "cipher":{"algorithm":"aes-256-gcm","iv":base64},"ciphertext":base64(ciphertext || 16-byte tag)}
 */
export const PLAIN_FORMAT = 'flowcrypt-ekm-keys';
export const ENCRYPTED_FORMAT = 'flowcrypt-ekm-keys-encrypted';
export const FORMAT_VERSION = 1;

/** scrypt cost for new exports: N=2^17, r=8 (128 MiB, about half a second), as OWASP recommends. */
const SCRYPT_COST = { N: 2 ** 17, r: 8, p: 1 } as const;
/** Bounds on the cost an import accepts from a file, so a crafted file cannot exhaust memory. */
const MAX_SCRYPT_N = 2 ** 20;
const MAX_SCRYPT_R = 32;
const MAX_SCRYPT_P = 16;
const MIN_PASSPHRASE_LENGTH = 8;

/** One key in an export file. `--export` writes every field; the importer checks the optional ones against the key. */
export interface ExportedKey {
  readonly email: string;
  readonly fingerprint?: string;
  readonly privateKey: string;
  readonly publicKey?: string;
}

export interface ExportDocument {
  readonly format: typeof PLAIN_FORMAT;
  readonly version: typeof FORMAT_VERSION;
  readonly exportedAt: string;
  readonly orgId: string;
  readonly store: string;
  readonly keys: readonly ExportedKey[];
}

interface ScryptParams {
  readonly algorithm: 'scrypt';
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: string;
}

/** A problem with an export file or its passphrase, told to the operator in one line. */
export class ExportFileError extends Error {
  override readonly name = 'ExportFileError';
}

export function exportedKey(key: StoredKey): ExportedKey {
  return { email: key.email, fingerprint: key.fingerprint, privateKey: key.privateKey, publicKey: key.publicKey };
}

/**
 * The passphrase in `file`: its content without one trailing line break (what `echo` or an editor
 * adds). Never logged or echoed.
 */
export function readPassphraseFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ExportFileError(`Cannot read the passphrase file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unknown error'}`);
  }
  const passphrase = text.replace(/\r?\n$/, '');
  if (passphrase.length < MIN_PASSPHRASE_LENGTH) {
    throw new ExportFileError(`The passphrase in ${file} is shorter than ${MIN_PASSPHRASE_LENGTH} characters`);
  }
  return passphrase;
}

/** The file's bytes for this document: plain JSON, or sealed to `passphrase` when given. */
export function serializeExport(doc: ExportDocument, passphrase: string | undefined): Buffer {
  const plain = Buffer.from(`${JSON.stringify(doc, null, 2)}\n`, 'utf8');
  if (passphrase === undefined) return plain;
  const kdf: ScryptParams = { algorithm: 'scrypt', ...SCRYPT_COST, salt: randomBytes(32).toString('base64') };
  const iv = randomBytes(12);
  const cipherParams = { algorithm: 'aes-256-gcm' as const, iv: iv.toString('base64') };
  const cipher = createCipheriv('aes-256-gcm', deriveKey(passphrase, kdf), iv);
  cipher.setAAD(header(kdf, cipherParams));
  const sealed = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  plain.fill(0);
  const envelope = { format: ENCRYPTED_FORMAT, version: FORMAT_VERSION, kdf, cipher: cipherParams, ciphertext: sealed.toString('base64') };
  return Buffer.from(`${JSON.stringify(envelope, null, 2)}\n`, 'utf8');
}

/**
 * Reads an export file's bytes (plain or encrypted) into its keys. Checks the shape of every entry
 * but not the keys themselves: the importer validates each as PUT does and reports it.
 */
export function parseExport(bytes: Buffer, passphrase: string | undefined): { doc: ExportDocument; encrypted: boolean } {
  const outer = parseJson(bytes, 'The file is not JSON; is it an export written by --export?');
  if (outer.format === ENCRYPTED_FORMAT) {
    if (passphrase === undefined) throw new ExportFileError('The file is encrypted: give its passphrase with --import-passphrase-file=<file>');
    return { doc: checkDocument(parseJson(decrypt(outer, passphrase), 'The decrypted file is not JSON')), encrypted: true };
  }
  return { doc: checkDocument(outer), encrypted: false };
}

function decrypt(envelope: Record<string, unknown>, passphrase: string): Buffer {
  if (envelope.version !== FORMAT_VERSION) throw new ExportFileError(`Unsupported encrypted export version ${String(envelope.version)}`);
  const kdf = envelope.kdf as Partial<ScryptParams> | undefined;
  const cipherParams = envelope.cipher as { algorithm?: unknown; iv?: unknown } | undefined;
  const isInt = (n: unknown, max: number): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= max;
  if (
    kdf?.algorithm !== 'scrypt' || !isInt(kdf.N, MAX_SCRYPT_N) || (kdf.N & (kdf.N - 1)) !== 0 || kdf.N < 2 ** 14 ||
    !isInt(kdf.r, MAX_SCRYPT_R) || !isInt(kdf.p, MAX_SCRYPT_P) || typeof kdf.salt !== 'string' || Buffer.from(kdf.salt, 'base64').length < 16
  ) {
    throw new ExportFileError('The encrypted export has missing or unacceptable key derivation parameters');
  }
  if (cipherParams?.algorithm !== 'aes-256-gcm' || typeof cipherParams.iv !== 'string' || Buffer.from(cipherParams.iv, 'base64').length !== 12) {
    throw new ExportFileError('The encrypted export has missing or unacceptable cipher parameters');
  }
  if (typeof envelope.ciphertext !== 'string') throw new ExportFileError('The encrypted export has no ciphertext');
  const sealed = Buffer.from(envelope.ciphertext, 'base64');
  if (sealed.length < 16) throw new ExportFileError('The encrypted export is truncated');
  const params: ScryptParams = { algorithm: 'scrypt', N: kdf.N, r: kdf.r, p: kdf.p, salt: kdf.salt };
  const cipher = { algorithm: 'aes-256-gcm' as const, iv: cipherParams.iv };
  const decipher = createDecipheriv('aes-256-gcm', deriveKey(passphrase, params), Buffer.from(cipher.iv, 'base64'));
  decipher.setAAD(header(params, cipher));
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]);
  } catch {
    throw new ExportFileError('Cannot decrypt the export: wrong passphrase, or the file was damaged or altered');
  }
}

function deriveKey(passphrase: string, kdf: ScryptParams): Buffer {
  return scryptSync(passphrase.normalize('NFC'), Buffer.from(kdf.salt, 'base64'), 32, {
    N: kdf.N,
    r: kdf.r,
    p: kdf.p,
    maxmem: 128 * kdf.N * kdf.r + 128 * kdf.r * kdf.p + 1024 * 1024,
  });
}

/** The authenticated header, serialised in a fixed key order on both sides. */
function header(kdf: ScryptParams, cipher: { algorithm: 'aes-256-gcm'; iv: string }): Buffer {
  return Buffer.from(JSON.stringify({
    format: ENCRYPTED_FORMAT,
    version: FORMAT_VERSION,
    kdf: { algorithm: kdf.algorithm, N: kdf.N, r: kdf.r, p: kdf.p, salt: kdf.salt },
    cipher: { algorithm: cipher.algorithm, iv: cipher.iv },
  }));
}

function parseJson(bytes: Buffer, message: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ExportFileError(message);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ExportFileError(message);
  return value as Record<string, unknown>;
}

function checkDocument(doc: Record<string, unknown>): ExportDocument {
  if (doc.format !== PLAIN_FORMAT) throw new ExportFileError(`Not an EKM key export (format is not "${PLAIN_FORMAT}")`);
  if (doc.version !== FORMAT_VERSION) throw new ExportFileError(`Unsupported export version ${String(doc.version)}; this version reads ${FORMAT_VERSION}`);
  const keys = doc.keys;
  if (!Array.isArray(keys)) throw new ExportFileError('The export has no "keys" list');
  keys.forEach((k: unknown, i) => {
    const entry = k as Record<string, unknown> | null;
    const ok =
      typeof entry === 'object' && entry !== null && typeof entry.email === 'string' && typeof entry.privateKey === 'string' &&
      ['fingerprint', 'publicKey'].every((f) => entry[f] === undefined || typeof entry[f] === 'string');
    if (!ok) throw new ExportFileError(`Key #${i + 1} of the export is not an object with string "email" and "privateKey"`);
  });
  return {
    format: PLAIN_FORMAT,
    version: FORMAT_VERSION,
    exportedAt: textOf(doc.exportedAt),
    orgId: textOf(doc.orgId),
    store: textOf(doc.store),
    keys: keys as ExportedKey[],
  };
}

/** A descriptive field of the export: a string as written, anything else (absent, malformed) empty. */
function textOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}
