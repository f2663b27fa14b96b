import { join } from 'node:path';
import { PykmipServer } from '../../testbed/pykmip-server.js';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken } from '../../testbed/softhsm-token.js';

/** A fresh, empty backend of one store type: its `store.*` properties, and how to tear it down. */
export interface StoreBackend {
  readonly name: string;
  setup(dir: string): Promise<{ properties: Record<string, string>; cleanup?: () => Promise<void> }>;
}

export const encryptedDbStoreProperties = (dir: string, passphrase = 'target store passphrase') => ({
  'store.type': 'EncryptedDbStore',
  'store.db.folder': join(dir, 'db'),
  'store.db.encryption.key': passphrase,
});

/**
 * Every store type on a real backend (a database file, a SoftHSM2 token, a PyKMIP server); another
 * store type joins the commands' tests with one entry here.
 */
export const STORE_BACKENDS: readonly StoreBackend[] = [
  { name: 'EncryptedDbStore', setup: async (dir) => ({ properties: encryptedDbStoreProperties(dir) }) },
  {
    name: 'Pkcs11Store',
    setup: async () => {
      const token = createSoftHsmToken();
      // Child processes (the daemon, the commands) inherit SOFTHSM2_CONF, which points at this token.
      useSoftHsmToken(token);
      return {
        properties: { 'store.type': 'Pkcs11Store', 'store.pkcs11.module': SOFTHSM2_MODULE, 'store.pkcs11.pin': token.userPin },
        cleanup: async () => token.remove(),
      };
    },
  },
  {
    name: 'KmipStore',
    setup: async () => {
      const kmip = await PykmipServer.start();
      return { properties: kmip.properties(), cleanup: () => kmip.remove() };
    },
  },
];
