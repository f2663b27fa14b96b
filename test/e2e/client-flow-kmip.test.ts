import { openKmipStore } from '../../src/stores/kmip-store.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { PykmipServer } from '../support/pykmip-server.js';
import { runClientFlow } from './client-flow.js';

let kmip: PykmipServer;

runClientFlow({
  type: 'KmipStore',
  async start() {
    kmip = await PykmipServer.start();
    return kmip.properties('openssl-legacy', 'openssl');
  },
  // What `flowcrypt-ekm --test-store-connection` does on a new server: create the index key.
  async prepare() {
    const store = await openKmipStore(kmip.storeConfig(), { logger: new MemoryLogger(), setup: true });
    await store.probe();
    await store.close();
  },
  async breakStore() {
    await kmip.stop();
    return () => kmip.start();
  },
  async stop() {
    await kmip.remove();
  },
  secrets: () => [kmip.keystore('openssl-legacy').password],
});
