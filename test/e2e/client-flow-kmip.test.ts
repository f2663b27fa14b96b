import { PykmipServer } from '../../testbed/pykmip-server.js';
import { runClientFlow, testStoreConnection } from './client-flow.js';

let kmip: PykmipServer;

runClientFlow({
  type: 'KmipStore',
  async start() {
    kmip = await PykmipServer.start();
    return kmip.properties('openssl-legacy', 'openssl');
  },
  // On a new server, the operator's first --test-store-connection creates the index key.
  prepare: testStoreConnection,
  async breakStore() {
    await kmip.stop();
    return () => kmip.start();
  },
  async stop() {
    await kmip.remove();
  },
  secrets: () => [kmip.keystore('openssl-legacy').password],
});
