import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pkcs11StoreConfig } from '../../src/config/config.js';
import { openPkcs11Store } from '../../src/stores/pkcs11-store.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken } from '../../testbed/softhsm-token.js';
import { runStoreConformance } from './store-conformance.js';

const token = createSoftHsmToken();
useSoftHsmToken(token);
const config: Pkcs11StoreConfig = { type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin };
const logger = new MemoryLogger();

runStoreConformance('Pkcs11Store', async () => ({ store: await openPkcs11Store(config, { logger }), cleanup: async () => {} }));

describe('Pkcs11Store on SoftHSM2', () => {
  before(() => useSoftHsmToken(token));
  after(() => token.remove());

  it('finds its keys again after a restart and reads what it wrote', async () => {
    const first = await openPkcs11Store(config, { logger });
    const key = { email: 'restart@example.com', fingerprint: 'AB'.repeat(20), privateKey: 'private', publicKey: 'public' };
    await first.upsert(key);
    await first.close();
    const second = await openPkcs11Store(config, { logger });
    assert.deepEqual(await second.listByEmail(key.email), [key]);
    await second.close();
  });

  it('answers 503 once closed, never an empty list', async () => {
    const store = await openPkcs11Store(config, { logger });
    await store.close();
    await assert.rejects(store.listByEmail('closed@example.com'), { code: 'ERR_STORE_UNAVAILABLE' });
  });

  it('never logs the PIN', () => {
    assert.ok(logger.entries.length > 0);
    assert.equal(JSON.stringify(logger.entries).includes(token.userPin), false);
  });
});
