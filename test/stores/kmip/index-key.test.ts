import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { locateIndexKey, resolveIndexKey } from '../../../src/stores/kmip/index-key.js';
import { StoreUnavailableError } from '../../../src/errors.js';
import { openKmipStore } from '../../../src/stores/kmip-store.js';
import { ObjectType } from '../../../src/stores/kmip/kmip-enums.js';
import { destroy, locate, objectTypeAttribute, readLocated } from '../../../src/stores/kmip/kmip-messages.js';
import { RECORD_TAG } from '../../../src/stores/kmip/key-record.js';
import { MemoryLogger } from '../../support/memory-logger.js';
import { pykmipServerPerSuite } from '../../support/pykmip-per-suite.js';
import { makeKey } from '../store-conformance.js';

const anyRecord = () => locate([objectTypeAttribute(ObjectType.SecretData), RECORD_TAG()], 1);

describe('KMIP index key', () => {
  const kmip = pykmipServerPerSuite();

  it('EKMs racing to create it on an empty server all settle on the same one', async (t) => {
    const clients = Array.from({ length: 4 }, () => kmip().kmipClient());
    const started = Date.now();
    const keys = await Promise.all(clients.map((c) => resolveIndexKey(c, new MemoryLogger(), anyRecord(), true)));
    const registered = readLocated(await clients[0]!.one(locateIndexKey(), 'Locate'));
    t.diagnostic(`${registered.length} index keys registered by 4 racing clients; settled in ${Date.now() - started} ms`);
    assert.ok(registered.length > 1, 'the race happened: more than one client registered a key');
    for (const k of keys) {
      assert.equal(k.uniqueIdentifier, keys[0]!.uniqueIdentifier);
      assert.deepEqual(k.key, keys[0]!.key);
    }
    // A latecomer picks the same one, without waiting once the date has settled.
    const late = await resolveIndexKey(clients[0]!, new MemoryLogger(), anyRecord(), true);
    assert.equal(late.uniqueIdentifier, keys[0]!.uniqueIdentifier);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('is not created by a daemon that may not: a host whose identity sees none of the objects answers 503, not "no keys"', async () => {
    const owner = await openKmipStore(kmip().storeConfig(), { logger: new MemoryLogger(), setup: true });
    const key = makeKey('visible.to.owner@example.com');
    await owner.upsert(key);
    // Another certificate subject: PyKMIP shows it none of the objects the first one registered.
    const stranger = kmip().pki.issue('other-ekm-host', { clientAuth: true, serverAuth: false });
    const daemon = await openKmipStore(kmip().storeConfig({ key: kmip().keystore('openssl', stranger) }), { logger: new MemoryLogger(), setup: false });
    await assert.rejects(
      daemon.listByEmail(key.email),
      (e: unknown) => e instanceof StoreUnavailableError && /no EKM index key this client may see.*same certificate subject CN/.test(e.details),
    );
    await assert.rejects(daemon.probe(), StoreUnavailableError);
    // The right identity, also not allowed to create, finds the existing key.
    const sameIdentity = await openKmipStore(kmip().storeConfig({ key: kmip().keystore('keytool') }), { logger: new MemoryLogger(), setup: false });
    assert.deepEqual(await sameIdentity.listByEmail(key.email), [key]);
    await Promise.all([owner.close(), daemon.close(), sameIdentity.close()]);
  });

  it('is never replaced over existing records: a lost index key is a clear 503, not an empty store', async () => {
    const store = await openKmipStore(kmip().storeConfig(), { logger: new MemoryLogger(), setup: true });
    const key = makeKey('index.lost@example.com');
    await store.upsert(key);
    await store.probe();
    const client = kmip().kmipClient();
    const indexKeys = readLocated(await client.one(locateIndexKey(), 'Locate'));
    await client.batch(indexKeys.map(destroy));

    await assert.rejects(store.probe(), (e: unknown) => e instanceof StoreUnavailableError && /index key .* is gone/.test(e.details));
    const newcomer = await openKmipStore(kmip().storeConfig(), { logger: new MemoryLogger(), setup: true });
    await assert.rejects(newcomer.listByEmail(key.email), (e: unknown) => e instanceof StoreUnavailableError && e.details.includes('restore it'));
    assert.deepEqual(readLocated(await client.one(locateIndexKey(), 'Locate')), [], 'no new index key was made');
    await Promise.all([store.close(), newcomer.close(), client.close()]);
  });
});
