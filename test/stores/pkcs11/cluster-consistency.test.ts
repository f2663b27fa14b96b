import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { StoredKey } from '../../../src/stores/store.js';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken } from '../../../testbed/softhsm-token.js';
import { makeKey } from '../store-conformance.js';
import { type Harness, startHarness } from './cluster-harness.js';

const token = createSoftHsmToken();
useSoftHsmToken(token);

describe('Pkcs11Store with one primary and two workers', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin }, 2);
  });
  after(async () => {
    await h.stop();
    token.remove();
  });

  it('workers never load the PKCS#11 module themselves', async () => {
    for (const w of h.workers) assert.equal(await h.ask<boolean>(w, { command: 'modules' }), false);
  });

  it('a key written through one worker is read through the other at once, and a delete is seen at once, 150 times', async () => {
    const [a, b] = h.workers as [NonNullable<(typeof h.workers)[0]>, NonNullable<(typeof h.workers)[1]>];
    for (let i = 0; i < 150; i++) {
      const [writer, reader] = i % 2 === 0 ? [a, b] : [b, a];
      const key = makeKey(`round${i}@cluster.example`);
      assert.equal(await h.ask(writer, { command: 'upsert', key }), 'added');
      assert.deepEqual(await h.ask<StoredKey[]>(reader, { command: 'list', email: key.email }), [key]);
      // An update through the reader is what the writer then sees.
      const updated = { ...key, publicKey: `${key.publicKey}\n` };
      assert.equal(await h.ask(reader, { command: 'upsert', key: updated }), 'updated');
      assert.deepEqual(await h.ask<StoredKey[]>(writer, { command: 'list', email: key.email }), [updated]);
      if (i % 3 === 0) {
        assert.equal(await h.ask(writer, { command: 'delete', email: key.email, fingerprint: key.fingerprint }), true);
        assert.deepEqual(await h.ask<StoredKey[]>(reader, { command: 'list', email: key.email }), []);
        assert.equal(await h.ask(reader, { command: 'delete', email: key.email, fingerprint: key.fingerprint }), false);
      }
    }
    assert.equal(await h.ask<number>(a, { command: 'all' }), 100);
    assert.equal(await h.ask<number>(b, { command: 'all' }), 100);
  });

  it('concurrent writes from both workers are all kept, and a fingerprint conflict is a 409 from either', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => makeKey(`concurrent${i % 4}@cluster.example`));
    const results = await Promise.all(keys.map((key, i) => h.ask(h.workers[i % 2]!, { command: 'upsert', key })));
    assert.ok(results.every((r) => r === 'added'));
    for (let i = 0; i < 4; i++) {
      const email = `concurrent${i}@cluster.example`;
      for (const w of h.workers) {
        const got = (await h.ask<StoredKey[]>(w, { command: 'list', email })).map((k) => k.fingerprint).sort();
        assert.deepEqual(got, keys.filter((k) => k.email === email).map((k) => k.fingerprint).sort());
      }
    }
    await assert.rejects(h.ask(h.workers[1]!, { command: 'upsert', key: { ...keys[0]!, email: 'thief@cluster.example' } }), { code: 'ERR_FINGERPRINT_CONFLICT' });
  });

  it('the primary uses the same engine for its own probe', async () => {
    await h.host.store.probe();
  });
});
