import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../src/stores/store.js';
import { startInProcessApp } from '../support/in-process-app.js';
import { makeRealKey } from '../stores/store-conformance.js';

describe('public keys by email, fingerprint or long key id, in process over a real EncryptedDbStore', () => {
  let store: Store;
  let base: string;
  let close: () => Promise<void>;
  let alice: Awaited<ReturnType<typeof makeRealKey>>;
  let second: Awaited<ReturnType<typeof makeRealKey>>;

  before(async () => {
    // Public keys need no token: any use of the authenticator fails the test.
    ({ store, base, close } = await startInProcessApp({ authenticator: { authenticate: async () => assert.fail('public key routes need no token') } }));
    [alice, second] = await Promise.all([makeRealKey('alice@example.com'), makeRealKey('alice@example.com')]);
    await store.upsert(alice.key);
    await store.upsert(second.key);
  });

  after(async () => {
    await close();
  });

  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`);
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  it('answers a fingerprint or a long id of the primary key or a subkey, in any case, on both routes, with that key only', async () => {
    const forms = {
      fingerprint: alice.key.fingerprint,
      'lowercase fingerprint': alice.key.fingerprint.toLowerCase(),
      'primary long id': alice.primaryLongId.toLowerCase(),
      'subkey long id': alice.subkeyLongId,
      'subkey fingerprint': alice.subkeyFingerprint.toLowerCase(),
    };
    for (const [form, id] of Object.entries(forms)) {
      for (const prefix of ['/v1/keys/public/', '/keys/public/']) {
        const answer = await get(`${prefix}${id}`);
        assert.equal(answer.status, 200, `${form} on ${prefix}`);
        assert.deepEqual(answer.json, { publicKeys: [{ publicKey: alice.key.publicKey }] }, `${form} on ${prefix}`);
      }
    }
    // The email still answers both of the owner's keys.
    assert.deepEqual((await get('/v1/keys/public/alice@example.com')).json, { publicKeys: [{ publicKey: alice.key.publicKey }, { publicKey: second.key.publicKey }] });
  });

  it('answers an empty list for a well-formed id nobody has, including a 64-hex (v6) fingerprint', async () => {
    for (const id of ['0123456789ABCDEF', '0123456789abcdef0123456789abcdef01234567', 'ab'.repeat(32), alice.key.fingerprint.slice(0, 16)]) {
      const answer = await get(`/keys/public/${id}`);
      assert.equal(answer.status, 200, id);
      assert.deepEqual(answer.json, { publicKeys: [] }, id);
    }
  });

  it('keeps answering 400 for anything that is neither an email nor a key id', async () => {
    const hex = alice.key.fingerprint;
    for (const id of ['not-an-email', hex.slice(0, 15), hex.slice(0, 17), hex.slice(0, 39), `${hex}0`, `${hex}0`.repeat(2).slice(0, 63), hex.repeat(2).slice(0, 65), 'g'.repeat(16), `0x${alice.primaryLongId}`, `${alice.primaryLongId.slice(0, 8)} ${alice.primaryLongId.slice(8)}`]) {
      const answer = await get(`/v1/keys/public/${encodeURIComponent(id)}`);
      assert.equal(answer.status, 400, id);
      assert.equal(answer.json.code, 400, id);
      assert.equal(answer.json.message, 'Not an email address this key manager accepts', id);
    }
  });
});
