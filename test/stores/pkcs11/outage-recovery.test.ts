import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { StoreUnavailableError } from '../../../src/errors.js';
import { startPkcs11Host } from '../../../src/stores/pkcs11/pkcs11-host.js';
import { openPkcs11Store } from '../../../src/stores/pkcs11-store.js';
import { MemoryLogger } from '../../support/memory-logger.js';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken } from '../../../testbed/softhsm-token.js';
import { makeKey } from '../store-conformance.js';

const token = createSoftHsmToken();
useSoftHsmToken(token);
const logger = new MemoryLogger();

describe('Pkcs11Store outage and recovery', () => {
  after(() => token.remove());

  it('answers 503 (never an empty list) while the token is gone, and recovers by itself when it is back', async (t) => {
    const store = await openPkcs11Store({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin }, { logger });
    const key = makeKey('outage@example.com');
    await store.upsert(key);
    assert.deepEqual(await store.listByEmail(key.email), [key]);

    renameSync(token.tokenDir, `${token.tokenDir}.away`);
    for (let i = 0; i < 5; i++) {
      await assert.rejects(store.listByEmail(key.email), StoreUnavailableError);
      await assert.rejects(store.probe(), StoreUnavailableError);
      await assert.rejects(store.upsert(makeKey('outage@example.com')), StoreUnavailableError);
      await assert.rejects(store.delete(key.email, key.fingerprint), StoreUnavailableError);
      await sleep(100);
    }
    await assert.rejects(async () => {
      for await (const _ of store.all()) assert.fail('iterated a key while the token is gone');
    }, StoreUnavailableError);

    renameSync(`${token.tokenDir}.away`, token.tokenDir);
    const back = Date.now();
    let keys: unknown;
    for (;;) {
      try {
        keys = await store.listByEmail(key.email);
        break;
      } catch (e) {
        // Only the outage is retried; anything else fails the test with its own message.
        if (!(e instanceof StoreUnavailableError)) throw e;
        assert.ok(Date.now() - back < 15_000, `not recovered within 15 s: ${e.message}`);
        await sleep(50);
      }
    }
    t.diagnostic(`recovered ${Date.now() - back} ms after the token came back`);
    assert.deepEqual(keys, [key]);
    await store.probe();
    assert.equal(await store.upsert(makeKey('outage@example.com')), 'added');
    await store.close();
    assert.ok(logger.entries.some((e) => e.level === 'warn' && e.message.includes('connection was closed')));
    assert.ok(logger.entries.some((e) => e.level === 'info' && e.message.includes('Reconnected')));
    assert.equal(JSON.stringify(logger.entries).includes(token.userPin), false);
  });

  it('the primary host starts while the token is gone, answers 503, and connects when it is back', async () => {
    renameSync(token.tokenDir, `${token.tokenDir}.away`);
    const host = await startPkcs11Host({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin }, logger);
    try {
      await assert.rejects(host.store.listByEmail('outage@example.com'), StoreUnavailableError);
      renameSync(`${token.tokenDir}.away`, token.tokenDir);
      const back = Date.now();
      for (;;) {
        try {
          assert.equal((await host.store.listByEmail('outage@example.com')).length, 2);
          break;
        } catch (e) {
          if (!(e instanceof StoreUnavailableError)) throw e;
          assert.ok(Date.now() - back < 15_000, `not connected within 15 s: ${e.message}`);
          await sleep(50);
        }
      }
    } finally {
      await host.close();
    }
  });
});
