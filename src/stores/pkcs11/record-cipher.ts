import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { StoreUnavailableError } from '../../errors.js';
import type { StoredKey } from '../store.js';
import { readUlong, type RecordKeys } from './record-keys.js';
import type { TokenSession } from './token-session.js';

/** What one data object holds, encrypted. */
export interface RecordContent {
  readonly key: StoredKey;
  /** When the fingerprint was first stored (engine clock, microseconds): keeps insertion order across updates. */
  readonly createdAt: number;
  /** When this version was written: an update is create-then-delete, so the newest wins if both are seen. */
  readonly writtenAt: number;
}

const FORMAT = 1;
const AAD_PREFIX = Buffer.from('flowcrypt-ekm pkcs11 record v1\0');
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Record encryption and index tags, computed by the token with keys that never leave it.
 * A record is `[format][iv][AES-256-GCM ciphertext and tag]` with the owner and fingerprint tags as
 * AAD, so a record copied onto another owner's or fingerprint's object fails to open.
 */
export class RecordCipher {
  constructor(
    private readonly session: TokenSession,
    private readonly keys: RecordKeys,
  ) {}

  /** HMAC-SHA256 of the lowercased email: the object label, so no label carries an email. */
  ownerTag(email: string): Buffer {
    return this.hmac(`owner\0${email}`);
  }

  /** HMAC-SHA256 of the fingerprint: the object's CKA_OBJECT_ID. */
  fingerprintTag(fingerprint: string): Buffer {
    return this.hmac(`fingerprint\0${fingerprint}`);
  }

  /** HMAC-SHA256 of a key id (fingerprint or long id): the CKA_LABEL of its lookup objects. */
  keyIdTag(id: string): Buffer {
    return this.hmac(`keyid\0${id}`);
  }

  seal(ownerTag: Buffer, fingerprintTag: Buffer, content: RecordContent): Buffer {
    const { lib, handle: s } = this.session;
    const plaintext = Buffer.from(
      JSON.stringify({ e: content.key.email, f: content.key.fingerprint, k: content.key.privateKey, p: content.key.publicKey, c: content.createdAt, w: content.writtenAt }),
    );
    const iv = randomBytes(IV_BYTES);
    lib.C_EncryptInit(s, gcm(iv, ownerTag, fingerprintTag), this.keys.record);
    const sealed = lib.C_Encrypt(s, plaintext, Buffer.alloc(plaintext.length + TAG_BYTES + 16));
    // Without tagBits SoftHSM2 encrypts with no tag: refuse to write a record nobody could verify.
    if (sealed.length !== plaintext.length + TAG_BYTES) throw new Error('C_Encrypt(CKM_AES_GCM) returned no authentication tag');
    return Buffer.concat([Buffer.from([FORMAT]), iv, sealed]);
  }

  /** Throws StoreUnavailableError when the record was tampered with or belongs to another object. */
  open(ownerTag: Buffer, fingerprintTag: Buffer, value: Buffer): RecordContent {
    if (value.length < 1 + IV_BYTES + TAG_BYTES || value[0] !== FORMAT) throw integrityFailure();
    const { lib, handle: s } = this.session;
    const iv = value.subarray(1, 1 + IV_BYTES);
    const sealed = value.subarray(1 + IV_BYTES);
    let plaintext: Buffer;
    try {
      lib.C_DecryptInit(s, gcm(iv, ownerTag, fingerprintTag), this.keys.record);
      plaintext = lib.C_Decrypt(s, sealed, Buffer.alloc(sealed.length));
    } catch (e) {
      // A failed tag check and a vanished token can both end up as CKR_GENERAL_ERROR here: if the
      // key is still readable the token is fine and the record is bad.
      this.assertKeysPresent();
      throw integrityFailure(e);
    }
    let r: { e: string; f: string; k: string; p: string; c: number; w: number };
    try {
      r = JSON.parse(plaintext.toString('utf8')) as typeof r;
    } catch {
      // Without the SyntaxError: its message quotes the decrypted text.
      throw integrityFailure();
    }
    return { key: { email: r.e, fingerprint: r.f, privateKey: r.k, publicKey: r.p }, createdAt: r.c, writtenAt: r.w };
  }

  /**
   * Throws the module's error unless the token still holds the record key. SoftHSM2 answers a find
   * on a token whose directory vanished with no objects and no error; this read proves the token is
   * there, so an empty find result is trusted only after it.
   */
  assertKeysPresent(): void {
    const [cls] = this.session.lib.C_GetAttributeValue(this.session.handle, this.keys.record, [{ type: pkcs11js.CKA_CLASS }]);
    if (readUlong(cls?.value) !== pkcs11js.CKO_SECRET_KEY) throw new Error('The record key handle no longer names the record key');
  }

  private hmac(data: string): Buffer {
    const { lib, handle: s } = this.session;
    lib.C_SignInit(s, { mechanism: pkcs11js.CKM_SHA256_HMAC }, this.keys.index);
    return Buffer.from(lib.C_Sign(s, Buffer.from(data, 'utf8'), Buffer.alloc(32)));
  }
}

/** PKCS#11 2.40 section 2.14.3 CK_GCM_PARAMS; pkcs11js needs the v2.40 layout for SoftHSM2 2.6. */
function gcm(iv: Buffer, ownerTag: Buffer, fingerprintTag: Buffer): pkcs11js.Mechanism {
  const parameter: pkcs11js.AesGCM = {
    type: pkcs11js.CK_PARAMS_AES_GCM_v240,
    iv,
    ivBits: IV_BYTES * 8,
    aad: Buffer.concat([AAD_PREFIX, ownerTag, fingerprintTag]),
    tagBits: TAG_BYTES * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

function integrityFailure(cause?: unknown): StoreUnavailableError {
  return new StoreUnavailableError('A stored record failed its integrity check; the token may hold tampered or misplaced objects', { cause });
}
