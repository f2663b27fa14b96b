import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { locateIndexKey, resolveIndexKey } from '../../../src/stores/kmip/index-key.js';
import { readLocated } from '../../../src/stores/kmip/kmip-messages.js';
import { MemoryLogger } from '../../support/memory-logger.js';
import { PykmipServer } from '../../support/pykmip-server.js';

describe('KMIP index key', () => {
  let kmip: PykmipServer;
  before(async () => {
    kmip = await PykmipServer.start();
  });
  after(async () => {
    await kmip.remove();
  });

  it('EKMs racing to create it on an empty server all settle on the same one', async (t) => {
    const clients = Array.from({ length: 4 }, () => kmip.kmipClient());
    const started = Date.now();
    const keys = await Promise.all(clients.map((c) => resolveIndexKey(c, new MemoryLogger())));
    const registered = readLocated(await clients[0]!.one(locateIndexKey(), 'Locate'));
    t.diagnostic(`${registered.length} index keys registered by 4 racing clients; settled in ${Date.now() - started} ms`);
    assert.ok(registered.length > 1, 'the race happened: more than one client registered a key');
    for (const k of keys) {
      assert.equal(k.uniqueIdentifier, keys[0]!.uniqueIdentifier);
      assert.deepEqual(k.key, keys[0]!.key);
    }
    // A latecomer picks the same one, without waiting once the date has settled.
    const late = await resolveIndexKey(clients[0]!, new MemoryLogger());
    assert.equal(late.uniqueIdentifier, keys[0]!.uniqueIdentifier);
    await Promise.all(clients.map((c) => c.close()));
  });
});
