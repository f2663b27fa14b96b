import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { FingerprintConflictError, KeyLimitError } from '../../src/errors.js';
import { loadOpenpgp } from '../../src/keys/load-openpgp.js';
import type { Store, StoredKey } from '../../src/stores/store.js';

/**
 * The contract every Store must keep. Each store's test file calls this with a factory that opens
 * the store on a fresh, real backend (a database file, a SoftHSM2 token, a PyKMIP server).
 */
export function runStoreConformance(name: string, open: () => Promise<{ store: Store; cleanup: () => Promise<void> }>): void {
  describe(`${name} conformance`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    const run = randomBytes(4).toString('hex');
    const email = (n: string) => `${n}.${run}@conformance.example`;

    before(async () => {
      ({ store, cleanup } = await open());
    });
    after(async () => {
      await store.close();
      await cleanup();
    });

    it('probes the backend', async () => {
      await store.probe();
    });

    it('lists nothing for an unknown user', async () => {
      assert.deepEqual(await store.listByEmail(email('nobody')), []);
    });

    it('adds a key and returns it byte-identical', async () => {
      const key = makeKey(email('alice'));
      assert.equal(await store.upsert(key), 'added');
      assert.deepEqual(await store.listByEmail(key.email), [key]);
    });

    it('upserts by fingerprint: same key unchanged, new material updated in place', async () => {
      const key = makeKey(email('bob'));
      const second = makeKey(email('bob'));
      assert.equal(await store.upsert(key), 'added');
      assert.equal(await store.upsert(second), 'added');
      assert.equal(await store.upsert(key), 'unchanged');
      const replaced = { ...key, privateKey: key.privateKey.replace('PRIVATE KEY BLOCK-----\n', 'PRIVATE KEY BLOCK-----\nComment: renewed\n') };
      assert.equal(await store.upsert(replaced), 'updated');
      assert.deepEqual(await store.listByEmail(key.email), [replaced, second]);
    });

    it("refuses a fingerprint held by another user and leaves the owner's key alone", async () => {
      const key = makeKey(email('carol'));
      await store.upsert(key);
      await assert.rejects(store.upsert({ ...key, email: email('mallory') }), FingerprintConflictError);
      assert.deepEqual(await store.listByEmail(email('mallory')), []);
      assert.deepEqual(await store.listByEmail(key.email), [key]);
    });

    it('deletes a key, which is then gone', async () => {
      const key = makeKey(email('dave'));
      const kept = makeKey(email('dave'));
      await store.upsert(key);
      await store.upsert(kept);
      assert.equal(await store.delete(email('someone-else'), key.fingerprint), false);
      assert.equal(await store.delete(key.email, key.fingerprint), true);
      assert.equal(await store.delete(key.email, key.fingerprint), false);
      assert.deepEqual(await store.listByEmail(key.email), [kept]);
      // The fingerprint is free again for whoever holds the key now.
      assert.equal(await store.upsert({ ...key, email: email('erin') }), 'added');
    });

    it('keeps every one of many concurrent writes', async () => {
      const keys = Array.from({ length: 12 }, (_, i) => makeKey(email(`many${i % 3}`)));
      await Promise.all(keys.map((k) => store.upsert(k)));
      for (let i = 0; i < 3; i++) {
        const expected = keys.filter((k) => k.email === email(`many${i}`)).map((k) => k.fingerprint).sort();
        const got = (await store.listByEmail(email(`many${i}`))).map((k) => k.fingerprint).sort();
        assert.deepEqual(got, expected);
      }
    });

    describe('lookup by key id', () => {
      let real: StoredKey;
      let ids: { primaryLongId: string; subkeyFingerprint: string; subkeyLongId: string };
      before(async () => {
        ({ key: real, ...ids } = await makeRealKey(email('kate')));
      });

      it('finds a key by fingerprint and by the long id of its primary key and of its subkey, in any case', async () => {
        assert.equal(await store.upsert(real), 'added');
        for (const id of [real.fingerprint, ids.primaryLongId, ids.subkeyFingerprint, ids.subkeyLongId]) {
          assert.deepEqual(await store.listByKeyId(id), [real], id);
        }
        // A public key that does not parse still answers to its fingerprint and its long id.
        const fake = makeKey(email('kate'));
        assert.equal(await store.upsert(fake), 'added');
        assert.deepEqual(await store.listByKeyId(fake.fingerprint), [fake]);
        assert.deepEqual(await store.listByKeyId(fake.fingerprint.slice(-16)), [fake]);
      });

      it('finds nothing for an unknown id or a prefix of a known one', async () => {
        assert.deepEqual(await store.listByKeyId(randomBytes(20).toString('hex').toUpperCase()), []);
        assert.deepEqual(await store.listByKeyId(randomBytes(8).toString('hex').toUpperCase()), []);
        assert.deepEqual(await store.listByKeyId(real.fingerprint.slice(0, 16)), []);
      });

      it('finds the new version after an update and nothing after delete', async () => {
        const renewed = { ...real, privateKey: real.privateKey.replace('PRIVATE KEY BLOCK-----\n', 'PRIVATE KEY BLOCK-----\nComment: renewed\n') };
        assert.equal(await store.upsert(renewed), 'updated');
        assert.deepEqual(await store.listByKeyId(ids.subkeyLongId), [renewed]);
        assert.deepEqual(await store.listByKeyId(real.fingerprint), [renewed]);
        assert.equal(await store.delete(real.email, real.fingerprint), true);
        for (const id of [real.fingerprint, ids.primaryLongId, ids.subkeyFingerprint, ids.subkeyLongId]) {
          assert.deepEqual(await store.listByKeyId(id), [], id);
        }
      });

      it("drops a replaced key's subkey ids when the new version lacks that subkey", async () => {
        const first = await makeRealKey(email('lena'));
        const other = await makeRealKey(email('lena'));
        assert.equal(await store.upsert(first.key), 'added');
        // The same fingerprint with another key's public part: the old subkey no longer answers.
        const replaced = { ...first.key, publicKey: other.key.publicKey };
        assert.equal(await store.upsert(replaced), 'updated');
        assert.deepEqual(await store.listByKeyId(first.subkeyLongId), []);
        assert.deepEqual(await store.listByKeyId(first.key.fingerprint), [replaced]);
      });
    });

    it('holds an owner to the number of keys: a new fingerprint past it is refused, an update of a held one passes', async () => {
      const limits = { maxKeys: 3, maxBytes: 1024 * 1024 };
      const keys = Array.from({ length: 3 }, () => makeKey(email('frank')));
      for (const k of keys) assert.equal(await store.upsert(k, limits), 'added');
      await assert.rejects(store.upsert(makeKey(email('frank')), limits), (e: unknown) => {
        assert.ok(e instanceof KeyLimitError);
        assert.equal(e.code, 'ERR_KEY_COUNT_LIMIT');
        assert.equal(e.message, 'at most 3 keys per user: ask your administrator to remove old ones');
        return true;
      });
      const revoked = { ...keys[1]!, privateKey: keys[1]!.privateKey.replace('PRIVATE KEY BLOCK-----\n', 'PRIVATE KEY BLOCK-----\nComment: revoked\n') };
      assert.equal(await store.upsert(revoked, limits), 'updated');
      assert.deepEqual(await store.listByEmail(email('frank')), [keys[0], revoked, keys[2]]);
      // Another owner is not counted with this one.
      assert.equal(await store.upsert(makeKey(email('grace')), limits), 'added');
    });

    it('holds an owner to the byte budget: a new key past it is refused, an update may grow only into the room left', async () => {
      const first = makeKey(email('heidi'));
      const size = Buffer.byteLength(first.privateKey);
      const limits = { maxKeys: 10, maxBytes: 2 * size + 100 };
      assert.equal(await store.upsert(first, limits), 'added');
      assert.equal(await store.upsert(makeKey(email('heidi')), limits), 'added');
      await assert.rejects(store.upsert(makeKey(email('heidi')), limits), (e: unknown) => e instanceof KeyLimitError && e.code === 'ERR_KEY_BYTES_LIMIT' && /^at most \d+ bytes of keys per user: ask your administrator to remove old ones$/.test(e.message));
      const grown = (n: number) => ({ ...first, privateKey: first.privateKey.replace('BLOCK-----\n', `BLOCK-----\nComment: ${'x'.repeat(n)}\n`) });
      await assert.rejects(store.upsert(grown(120), limits), KeyLimitError);
      assert.equal(await store.upsert(grown(50), limits), 'updated');
      assert.equal((await store.listByEmail(email('heidi'))).length, 2);
    });

    it("keeps one owner's concurrent new keys within the number of keys", async () => {
      const limits = { maxKeys: 3, maxBytes: 1024 * 1024 };
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => store.upsert(makeKey(email('ivan')), limits)));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
      assert.ok(results.every((r) => r.status === 'fulfilled' || r.reason instanceof KeyLimitError));
      assert.equal((await store.listByEmail(email('ivan'))).length, 3);
    });

    it('iterates every stored key', async () => {
      const seen = new Map<string, StoredKey>();
      for await (const k of store.all()) seen.set(k.fingerprint, k);
      for (const who of ['alice', 'bob', 'carol', 'dave', 'erin', 'lena', 'many0', 'many1', 'many2']) {
        for (const k of await store.listByEmail(email(who))) assert.deepEqual(seen.get(k.fingerprint), k);
      }
      assert.ok(seen.size >= 18, `only ${seen.size} keys iterated`);
    });
  });
}

/** A key record of realistic size; stores treat the armored text as opaque. */
export function makeKey(email: string): StoredKey {
  const body = (n: number) => randomBytes(n).toString('base64').replace(/(.{64})/g, '$1\n');
  return {
    email,
    fingerprint: randomBytes(20).toString('hex').toUpperCase(),
    privateKey: `-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n${body(3000)}\n-----END PGP PRIVATE KEY BLOCK-----\n`,
    publicKey: `-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n${body(1200)}\n-----END PGP PUBLIC KEY BLOCK-----\n`,
  };
}

/** A real OpenPGP key (ed25519 with an encryption subkey) and the ids it answers to. */
export async function makeRealKey(email: string) {
  const openpgp = await loadOpenpgp();
  const { privateKey, publicKey } = await openpgp.generateKey({ type: 'ecc', curve: 'ed25519Legacy', userIDs: [{ email }], format: 'object' });
  const subkey = publicKey.getSubkeys()[0]!;
  return {
    key: { email, fingerprint: publicKey.getFingerprint().toUpperCase(), privateKey: privateKey.armor(), publicKey: publicKey.armor() } satisfies StoredKey,
    primaryLongId: publicKey.getKeyID().toHex().toUpperCase(),
    subkeyFingerprint: subkey.getFingerprint().toUpperCase(),
    subkeyLongId: subkey.getKeyID().toHex().toUpperCase(),
  };
}
