import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StoredKeyAnswerCache } from '../../src/http/stored-key-answer-cache.js';
import type { StoredKey } from '../../src/stores/store.js';
import { makeKey } from '../stores/store-conformance.js';

/** A cache whose builds are counted. */
function counted(limits = { maxEntries: 100, maxBytes: 1024 * 1024 }) {
  const cache = new StoredKeyAnswerCache(limits);
  let builds = 0;
  const answer = (scope: string, keys: readonly StoredKey[], size = 10) =>
    cache.answer(scope, keys, async () => {
      builds++;
      return Buffer.alloc(size, builds);
    });
  return { cache, answer, builds: () => builds };
}

describe('StoredKeyAnswerCache', () => {
  it('builds an answer once per content of the records, whichever objects carry it', async () => {
    const { answer, builds } = counted();
    const key = makeKey('ann@example.com');
    const first = await answer('ann@example.com', [key]);
    // Another worker or host would return equal records as new objects (PKCS#11, KMIP): still a hit.
    assert.equal(await answer('ann@example.com', [{ ...key }]), first);
    assert.equal(await answer('ann@example.com', [Object.freeze({ ...key })]), first);
    assert.equal(builds(), 1);
  });

  it('builds again when a record changes, one is added or removed, or the scope differs', async () => {
    const { answer, builds } = counted();
    const key = makeKey('bea@example.com');
    const other = makeKey('bea@example.com');
    await answer('bea@example.com', [key]);
    await answer('bea@example.com', [{ ...key, publicKey: key.publicKey.replace('BLOCK-----\n', 'BLOCK-----\nComment: revoked\n') }]);
    assert.equal(builds(), 2);
    await answer('bea@example.com', [key, other]);
    assert.equal(builds(), 3);
    await answer('bea@example.com', [other]);
    assert.equal(builds(), 4);
    await answer('another scope', [key]);
    assert.equal(builds(), 5);
    await answer('bea@example.com', [key, other]);
    assert.equal(builds(), 5);
  });

  it('shares one build among concurrent misses', async () => {
    const { answer, builds } = counted();
    const key = makeKey('cid@example.com');
    const answers = await Promise.all(Array.from({ length: 6 }, () => answer('cid@example.com', [key])));
    assert.equal(builds(), 1);
    assert.ok(answers.every((a) => a === answers[0]));
  });

  it('holds at most its entries and bytes, least recently used out first, and never an address without keys', async () => {
    const { cache, answer, builds } = counted({ maxEntries: 3, maxBytes: 1000 });
    const keys = Array.from({ length: 4 }, (_, i) => makeKey(`u${i}@example.com`));
    for (const k of keys.slice(0, 3)) await answer(k.email, [k]);
    await answer(keys[0]!.email, [keys[0]!]);
    await answer(keys[3]!.email, [keys[3]!]);
    assert.deepEqual(cache.size, { entries: 3, bytes: 30 });
    assert.equal(builds(), 4);
    await answer(keys[0]!.email, [keys[0]!]);
    assert.equal(builds(), 4, 'the recently used entry was kept');
    await answer(keys[1]!.email, [keys[1]!]);
    assert.equal(builds(), 5, 'the least recently used entry was evicted');
    await answer('nobody@example.com', []);
    await answer('nobody@example.com', []);
    assert.equal(builds(), 7);
  });

  it('holds at most its bytes, and builds an answer over an eighth of them every time', async () => {
    const { cache, answer, builds } = counted({ maxEntries: 100, maxBytes: 1000 });
    for (let i = 0; i < 9; i++) await answer(`u${i}`, [makeKey(`u${i}@example.com`)], 120);
    assert.deepEqual(cache.size, { entries: 8, bytes: 960 });
    const big = makeKey('big@example.com');
    await answer(big.email, [big], 126);
    await answer(big.email, [big], 126);
    assert.equal(builds(), 11);
    assert.equal(cache.size.entries, 8);
  });
});
