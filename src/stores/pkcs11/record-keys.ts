import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { ConfigError } from '../../errors.js';
import type { TokenSession } from './token-session.js';

/** The two secret keys the EKM keeps on the token; both are generated there and never leave it. */
export interface RecordKeys {
  /** AES-256, encrypts each record with AES-GCM. */
  readonly record: pkcs11js.Handle;
  /** HMAC-SHA256 key that turns emails and fingerprints into the tags objects are found by. */
  readonly index: pkcs11js.Handle;
}

/** CKA_APPLICATION of every data object the EKM writes; also scopes its finds. */
export const RECORD_APPLICATION = 'flowcrypt-ekm record v1';
/** CKA_APPLICATION of the lookup objects that find a record by key id (see TokenRecordStore.listByKeyId). */
export const KEY_ID_APPLICATION = 'flowcrypt-ekm key id v1';
const RECORD_KEY_LABEL = 'flowcrypt-ekm record key v1';
const INDEX_KEY_LABEL = 'flowcrypt-ekm index key v1';

interface KeySpec {
  readonly label: string;
  readonly keyType: number;
  readonly generate: number;
  readonly usage: readonly number[];
}

const SPECS = {
  record: { label: RECORD_KEY_LABEL, keyType: pkcs11js.CKK_AES, generate: pkcs11js.CKM_AES_KEY_GEN, usage: [pkcs11js.CKA_ENCRYPT, pkcs11js.CKA_DECRYPT] },
  index: { label: INDEX_KEY_LABEL, keyType: pkcs11js.CKK_GENERIC_SECRET, generate: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN, usage: [pkcs11js.CKA_SIGN, pkcs11js.CKA_VERIFY] },
} as const satisfies Record<keyof RecordKeys, KeySpec>;

/**
 * Finds the EKM's keys on the token, generating them on first use. Refuses a key that could leave
 * the token (extractable or not sensitive), and refuses to generate new keys while records exist:
 * those records would be unreadable, so a missing key means the token is not the one the data
 * belongs to.
 */
export function findOrCreateRecordKeys(session: TokenSession): RecordKeys {
  const found = { record: findKey(session, SPECS.record), index: findKey(session, SPECS.index) };
  if ((found.record === undefined || found.index === undefined) && recordsExist(session)) {
    throw new ConfigError(
      `The token "${session.tokenLabel}" holds EKM records but not the key "${found.record === undefined ? RECORD_KEY_LABEL : INDEX_KEY_LABEL}" they depend on; refusing to generate a new one (the records could never be read again).`,
    );
  }
  return {
    record: found.record ?? generateKey(session, SPECS.record),
    index: found.index ?? generateKey(session, SPECS.index),
  };
}

/**
 * Several keys of one label appear when two EKM hosts start on an empty token at once: everyone
 * takes the one with the lowest CKA_ID, so all hosts agree.
 */
function findKey(session: TokenSession, spec: KeySpec): pkcs11js.Handle | undefined {
  const { lib, handle: s } = session;
  const handles = session.find([
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: spec.label },
  ], 16);
  const keys = handles.map((h) => {
    const attrs = lib.C_GetAttributeValue(s, h, [
      { type: pkcs11js.CKA_ID },
      { type: pkcs11js.CKA_KEY_TYPE },
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
    ]);
    const [id, keyType, sensitive, extractable] = attrs.map((a) => a.value);
    return { h, id: id ?? Buffer.alloc(0), keyType: readUlong(keyType), sensitive: isTrue(sensitive), extractable: isTrue(extractable) };
  });
  keys.sort((a, b) => Buffer.compare(a.id, b.id));
  const [chosen] = keys;
  if (chosen === undefined) return undefined;
  if (chosen.keyType !== spec.keyType || !chosen.sensitive || chosen.extractable) {
    throw new ConfigError(
      `The key "${spec.label}" on token "${session.tokenLabel}" is of the wrong type or can leave the token (sensitive=${chosen.sensitive}, extractable=${chosen.extractable}); the EKM only uses sensitive, non-extractable keys.`,
    );
  }
  return chosen.h;
}

function generateKey(session: TokenSession, spec: KeySpec): pkcs11js.Handle {
  session.lib.C_GenerateKey(session.handle, { mechanism: spec.generate }, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: spec.keyType },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_LABEL, value: spec.label },
    { type: pkcs11js.CKA_ID, value: randomBytes(16) },
    ...spec.usage.map((type) => ({ type, value: true })),
  ]);
  // Re-find rather than use the returned handle, so a concurrent first start converges on one key.
  const key = findKey(session, spec);
  if (key === undefined) throw new Error(`C_GenerateKey did not leave "${spec.label}" on the token`);
  return key;
}

function recordsExist(session: TokenSession): boolean {
  return session.find([
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_APPLICATION, value: RECORD_APPLICATION },
  ], 1).length > 0;
}

/** CK_BBOOL: one byte. */
function isTrue(value: Buffer | undefined): boolean {
  return value !== undefined && value.length > 0 && value[0] !== 0;
}

/** CK_ULONG in the platform's byte order and width (little-endian on the platforms we ship for). */
export function readUlong(value: Buffer | undefined): number {
  if (value === undefined || value.length === 0) return -1;
  return value.readUIntLE(0, Math.min(value.length, 6));
}
