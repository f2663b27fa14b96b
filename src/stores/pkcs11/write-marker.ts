import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { TokenSession } from './token-session.js';

const MARKER_APPLICATION = 'flowcrypt-ekm write marker v1';

/**
 * A data object whose label every EKM process sets to a fresh random value after each of its
 * writes, so another process can tell "someone else wrote" with one attribute read (which SoftHSM2
 * answers from the object's own file, fresh) instead of a find. See TokenRecordStore.markWritten.
 */
export class WriteMarker {
  private constructor(
    private readonly session: TokenSession,
    private readonly handle: pkcs11js.Handle,
  ) {}

  /** Finds the marker, creating it on first use; of several (a race at first start) all take the lowest id. */
  static open(session: TokenSession): WriteMarker {
    const { lib, handle: s } = session;
    const template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_APPLICATION, value: MARKER_APPLICATION },
    ];
    const find = () => session.find(template, 16);
    let found = find();
    if (found.length === 0) {
      lib.C_CreateObject(s, [
        ...template,
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_OBJECT_ID, value: randomBytes(16) },
        { type: pkcs11js.CKA_LABEL, value: randomBytes(16).toString('hex') },
      ]);
      found = find();
    }
    const ids = found.map((h) => ({ h, id: lib.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_OBJECT_ID }])[0]?.value ?? Buffer.alloc(0) }));
    ids.sort((a, b) => Buffer.compare(a.id, b.id));
    const [first] = ids;
    if (first === undefined) throw new Error('C_CreateObject did not leave the write marker on the token');
    return new WriteMarker(session, first.h);
  }

  read(): string {
    const [label] = this.session.lib.C_GetAttributeValue(this.session.handle, this.handle, [{ type: pkcs11js.CKA_LABEL }]);
    return label?.value.toString('latin1') ?? '';
  }

  /** Sets a fresh value and returns it. */
  touch(): string {
    const value = randomBytes(16).toString('hex');
    this.session.lib.C_SetAttributeValue(this.session.handle, this.handle, [{ type: pkcs11js.CKA_LABEL, value }]);
    return value;
  }
}
