import { renameSync } from 'node:fs';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken, type SoftHsmToken } from '../../testbed/softhsm-token.js';
import { runClientFlow, testStoreConnection } from './client-flow.js';

let token: SoftHsmToken;

runClientFlow({
  type: 'Pkcs11Store',
  async start() {
    token = createSoftHsmToken();
    // The daemon inherits SOFTHSM2_CONF, which points SoftHSM2 at this private token directory.
    useSoftHsmToken(token);
    return { 'store.type': 'Pkcs11Store', 'store.pkcs11.module': SOFTHSM2_MODULE, 'store.pkcs11.pin': token.userPin };
  },
  prepare: testStoreConnection,
  // The token vanishes, as an HSM that is unplugged or unreachable does.
  async breakStore() {
    renameSync(token.tokenDir, `${token.tokenDir}.away`);
    return async () => renameSync(`${token.tokenDir}.away`, token.tokenDir);
  },
  async stop() {
    token.remove();
  },
  secrets: () => [token.userPin, token.soPin],
});
