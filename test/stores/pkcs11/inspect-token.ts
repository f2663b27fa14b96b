import pkcs11js from 'pkcs11js';

/**
 * Run as a separate process: logs in to the token the way anyone holding the user PIN could, and
 * prints what such a person sees (`list`), or moves one stored record onto another object
 * (`move <from-label> <to-label>`) to test that records are bound to their object, or destroys the
 * key id lookup objects (`forget-key-ids`), leaving the token as the previous version wrote it.
 * Usage: node inspect-token.js <module> <token-label> <pin> list|move|forget-key-ids ...
 * The test runner also loads this file as a test file, with no arguments; it then does nothing.
 */
const [module, tokenLabel, pin, action, from, to] = process.argv.slice(2) as [string?, string?, string?, string?, string?, string?];
if (module !== undefined && tokenLabel !== undefined && pin !== undefined) inspect(module, tokenLabel, pin);

function inspect(module: string, tokenLabel: string, pin: string): void {
  const p = new pkcs11js.PKCS11();
  p.load(module);
  p.C_Initialize();
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === tokenLabel);
  if (slot === undefined) throw new Error(`no token labelled ${tokenLabel}`);
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  p.C_Login(s, pkcs11js.CKU_USER, pin);

  const find = (template: pkcs11js.Template) => {
    p.C_FindObjectsInit(s, template);
    const found = p.C_FindObjects(s, 100_000);
    p.C_FindObjectsFinal(s);
    return found;
  };
  const attr = (h: pkcs11js.Handle, type: number): Buffer | string => {
    try {
      return p.C_GetAttributeValue(s, h, [{ type }])[0]!.value;
    } catch (e) {
      return /CKR_[A-Z_]+/.exec((e as Error).message)?.[0] ?? 'error';
    }
  };
  const hex = (v: Buffer | string) => (typeof v === 'string' ? v : v.toString('hex'));
  const bool = (v: Buffer | string) => (typeof v === 'string' ? v : v[0] !== 0);

  if (action === 'list') {
    const objects = find([]).map((h) => {
      const cls = attr(h, pkcs11js.CKA_CLASS);
      const klass = typeof cls === 'string' ? -1 : cls.readUIntLE(0, 4);
      const common = { class: klass, label: String(attr(h, pkcs11js.CKA_LABEL)) };
      if (klass === pkcs11js.CKO_DATA) {
        return { ...common, application: String(attr(h, pkcs11js.CKA_APPLICATION)), objectId: hex(attr(h, pkcs11js.CKA_OBJECT_ID)), value: (attr(h, pkcs11js.CKA_VALUE) as Buffer).toString('latin1') };
      }
      return { ...common, sensitive: bool(attr(h, pkcs11js.CKA_SENSITIVE)), extractable: bool(attr(h, pkcs11js.CKA_EXTRACTABLE)), value: hex(attr(h, pkcs11js.CKA_VALUE)) };
    });
    process.stdout.write(JSON.stringify(objects));
  } else if (action === 'move' && from !== undefined && to !== undefined) {
    const [source] = find([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA }, { type: pkcs11js.CKA_LABEL, value: from }]);
    const [target] = find([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA }, { type: pkcs11js.CKA_LABEL, value: to }]);
    if (source === undefined || target === undefined) throw new Error('objects not found');
    p.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_APPLICATION, value: attr(target, pkcs11js.CKA_APPLICATION) },
      { type: pkcs11js.CKA_LABEL, value: to },
      { type: pkcs11js.CKA_OBJECT_ID, value: attr(target, pkcs11js.CKA_OBJECT_ID) },
      { type: pkcs11js.CKA_VALUE, value: attr(source, pkcs11js.CKA_VALUE) },
    ]);
    p.C_DestroyObject(s, target);
  } else if (action === 'forget-key-ids') {
    for (const h of find([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA }, { type: pkcs11js.CKA_APPLICATION, value: 'flowcrypt-ekm key id v1' }])) p.C_DestroyObject(s, h);
  }
  p.C_Logout(s);
  p.C_Finalize();
}
