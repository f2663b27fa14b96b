import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoredKey } from '../../src/stores/store.js';
import { locateIndexKey } from '../../src/stores/kmip/index-key.js';
import { readLocated } from '../../src/stores/kmip/kmip-messages.js';
import { pykmipServerPerSuite } from '../support/pykmip-per-suite.js';
import { runStoreProcess } from './kmip/store-process.js';
import { makeKey } from './store-conformance.js';

describe('KmipStore: two EKM processes on one PyKMIP server', () => {
  const kmip = pykmipServerPerSuite();

  it('starting together on an empty server, they agree on the index key and read what the other wrote', async (t) => {
    const config = kmip().storeConfig();
    const mine = (who: string) => [makeKey(`${who}.1@example.com`), makeKey(`${who}.2@example.com`), makeKey('both@example.com')];
    const a = mine('a');
    const b = mine('b');
    // Both processes start at once on a server that holds nothing: each may register an index key.
    const written = await Promise.all([runStoreProcess(config, { write: a }), runStoreProcess(config, { write: b })]);
    assert.deepEqual(written, [['added', 'added', 'added'], ['added', 'added', 'added']]);

    const emails = ['a.1@example.com', 'a.2@example.com', 'b.1@example.com', 'b.2@example.com', 'both@example.com'];
    const expected = [[a[0]], [a[1]], [b[0]], [b[1]], [a[2], b[2]]].map((keys) => sortByFingerprint(keys as StoredKey[]));
    const [readByA, readByB] = (await Promise.all([runStoreProcess(config, { read: emails }), runStoreProcess(config, { read: emails })])) as StoredKey[][][];
    assert.deepEqual(readByA!.map(sortByFingerprint), expected);
    assert.deepEqual(readByB!.map(sortByFingerprint), expected);
    const client = kmip().kmipClient();
    t.diagnostic(`index keys registered in the race: ${readLocated(await client.one(locateIndexKey(), 'Locate')).length}`);
    await client.close();
  });
});

function sortByFingerprint(keys: StoredKey[]): StoredKey[] {
  return [...keys].sort((x, y) => x.fingerprint.localeCompare(y.fingerprint));
}
