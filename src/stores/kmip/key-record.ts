import { createHmac } from 'node:crypto';
import type { StoredKey } from '../store.js';
import { APPLICATION_NAMESPACE } from './index-key.js';
import { applicationSpecificInformationAttribute, nameAttribute, objectGroupAttribute, type KmipAttribute } from './kmip-messages.js';

/**
 * How one StoredKey is kept on a KMIP server: the key material of a Secret Data object is this JSON
 * record; its attributes are keyed hashes only (no email, fingerprint or key in clear):
 * - Object Group `ekm1-owner-<HMAC(email)>`: a user's keys, found by one Locate;
 * - Name `ekm1-fp-<HMAC(fingerprint)>`: the record of a fingerprint, for upsert and conflicts;
 * - Name `ekm1-id-<HMAC(key id)>`, one per key id (Name is multi-instance, KMIP 1.0 section 3.2, and
 *   Locate matches any of an object's Names): the public key lookup by fingerprint or long id;
 * - Application Specific Information `flowcrypt-ekm` / `private-key-v1`: every record, for export.
 */
export interface KeyRecord {
  readonly key: StoredKey;
  /** When the fingerprint was first stored (microseconds, monotonic per process): the listing order. */
  readonly created: number;
  /** When this version was written: of two objects for one fingerprint, the later wins. */
  readonly written: number;
}

const RECORD_VERSION = 1;
/** The Name that tells a record's fingerprint, among its key id Names. */
export const FINGERPRINT_NAME_PREFIX = 'ekm1-fp-';
export const RECORD_TAG = () => applicationSpecificInformationAttribute(APPLICATION_NAMESPACE, 'private-key-v1');

/** The tags of a record; `indexKey` comes from the server (see index-key.ts). */
export class RecordTags {
  constructor(private readonly indexKey: Buffer) {}

  owner(email: string): KmipAttribute {
    return objectGroupAttribute(`ekm1-owner-${this.hash('email', email)}`);
  }

  fingerprint(fingerprint: string): KmipAttribute {
    return nameAttribute(`${FINGERPRINT_NAME_PREFIX}${this.hash('fingerprint', fingerprint)}`);
  }

  keyId(id: string): KmipAttribute {
    return nameAttribute(`ekm1-id-${this.hash('keyid', id)}`);
  }

  private hash(kind: string, value: string): string {
    return createHmac('sha256', this.indexKey).update(`${kind}\0${value}`).digest('base64url');
  }
}

let lastOrder = 0;
/** Microseconds since the epoch, strictly increasing within this process. */
export function nextOrder(): number {
  lastOrder = Math.max(Date.now() * 1000, lastOrder + 1);
  return lastOrder;
}

export function encodeRecord(record: KeyRecord): Buffer {
  const { email, fingerprint, privateKey, publicKey } = record.key;
  return Buffer.from(JSON.stringify({ v: RECORD_VERSION, e: email, f: fingerprint, k: privateKey, p: publicKey, c: record.created, w: record.written }), 'utf8');
}

/** undefined when the bytes are not a record of a version this EKM reads. */
export function decodeRecord(material: Uint8Array): KeyRecord | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(material).toString('utf8'));
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const r = parsed as Record<string, unknown>;
  if (r.v !== RECORD_VERSION) return undefined;
  const { e, f, k, p, c, w } = r;
  if (typeof e !== 'string' || typeof f !== 'string' || typeof k !== 'string' || typeof p !== 'string') return undefined;
  if (typeof c !== 'number' || typeof w !== 'number') return undefined;
  return { key: { email: e, fingerprint: f, privateKey: k, publicKey: p }, created: c, written: w };
}
