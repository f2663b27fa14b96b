import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import pkcs11js from 'pkcs11js';
import { StoreUnavailableError } from '../../../src/errors.js';
import { openPkcs11Store } from '../../../src/stores/pkcs11-store.js';
import { MemoryLogger } from '../../support/memory-logger.js';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken } from '../../../testbed/softhsm-token.js';
import { makeKey, makeRealKey } from '../store-conformance.js';

const RECORDS = 'flowcrypt-ekm record v1';
const KEY_IDS = 'flowcrypt-ekm key id v1';
const token = createSoftHsmToken();
useSoftHsmToken(token);
const inspector = fileURLToPath(new URL('./inspect-token.js', import.meta.url));
const inspect = (...args: string[]) => execFileSync(process.execPath, [inspector, SOFTHSM2_MODULE, token.label, token.userPin, ...args], { encoding: 'utf8' });

interface SeenObject {
  class: number;
  label: string;
  application?: string;
  objectId?: string;
  value: string;
  sensitive?: boolean;
  extractable?: boolean;
}

describe('what the token holds', () => {
  after(() => token.remove());

  it('someone who can list the objects sees no email, fingerprint or key, and cannot read the keys', async () => {
    const store = await openPkcs11Store({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin }, { logger: new MemoryLogger() });
    const keys = [makeKey('Visible.Person@example.com'.toLowerCase()), makeKey('other.person@example.com')];
    for (const k of keys) await store.upsert(k);
    await store.close();

    const objects = JSON.parse(inspect('list')) as SeenObject[];
    const data = objects.filter((o) => o.class === pkcs11js.CKO_DATA && o.application === RECORDS);
    // Besides the records and their key id lookups, only the write marker (SoftHSM2; its label is a random value).
    assert.deepEqual(objects.filter((o) => o.class === pkcs11js.CKO_DATA && o.application !== RECORDS && o.application !== KEY_IDS).map((o) => o.application), ['flowcrypt-ekm write marker v1']);
    // A fingerprint and its long id per fake key, each a keyed hash naming the record's fingerprint tag.
    const lookups = objects.filter((o) => o.class === pkcs11js.CKO_DATA && o.application === KEY_IDS);
    assert.equal(lookups.length, 4);
    for (const o of lookups) {
      assert.match(o.label, /^[0-9a-f]{64}$/);
      assert.equal(o.value, '');
    }
    const secret = objects.filter((o) => o.class === pkcs11js.CKO_SECRET_KEY);
    assert.equal(data.length, 2);
    assert.equal(secret.length, 2);
    const everything = JSON.stringify(objects).toLowerCase();
    for (const k of keys) {
      for (const text of [k.email, k.email.split('@')[0]!, k.fingerprint.toLowerCase(), k.fingerprint.slice(-16).toLowerCase(), k.privateKey.slice(80, 140).toLowerCase(), k.publicKey.slice(80, 140).toLowerCase()]) {
        assert.equal(everything.includes(text), false, `the token shows ${text.slice(0, 16)}...`);
      }
    }
    for (const o of data) {
      assert.match(o.label, /^[0-9a-f]{64}$/);
      assert.match(o.objectId!, /^[0-9a-f]{64}$/);
    }
    for (const o of secret) {
      assert.equal(o.sensitive, true);
      assert.equal(o.extractable, false);
      assert.equal(o.value, 'CKR_ATTRIBUTE_SENSITIVE');
    }
  });

  it("a record moved onto another user's object is refused with 503, not served", async () => {
    const store = await openPkcs11Store({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin }, { logger: new MemoryLogger() });
    const dataLabels = () => new Set((JSON.parse(inspect('list')) as SeenObject[]).filter((o) => o.application === RECORDS).map((o) => o.label));
    const newLabel = (before: Set<string>) => [...dataLabels()].find((l) => !before.has(l))!;
    const victim = makeKey('victim@example.com');
    const thief = makeKey('thief@example.com');
    let seen = dataLabels();
    await store.upsert(victim);
    const victimLabel = newLabel(seen);
    seen = dataLabels();
    await store.upsert(thief);
    const thiefLabel = newLabel(seen);
    inspect('move', victimLabel, thiefLabel);
    await assert.rejects(store.listByEmail(thief.email), StoreUnavailableError);
    assert.deepEqual(await store.listByEmail(victim.email), [victim]);
    await store.close();
  });

  it('adds the key id lookups a key written by the previous version lacks when the same key is uploaded again (as --import does)', async () => {
    const store = await openPkcs11Store({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin }, { logger: new MemoryLogger() });
    const { key, subkeyLongId } = await makeRealKey('old-token@example.com');
    assert.equal(await store.upsert(key), 'added');
    await store.close();
    inspect('forget-key-ids');
    const reopened = await openPkcs11Store({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin }, { logger: new MemoryLogger() });
    try {
      assert.deepEqual(await reopened.listByKeyId(subkeyLongId), []);
      assert.equal(await reopened.upsert(key), 'unchanged');
      assert.deepEqual(await reopened.listByKeyId(subkeyLongId), [key]);
    } finally {
      await reopened.close();
    }
  });
});
