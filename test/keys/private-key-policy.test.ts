import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { KeyRejectedError } from '../../src/errors.js';
import { validatePrivateKey } from '../../src/keys/private-key-policy.js';
import { makePrivateKey, makePrivateKeyWithUserIds, revoked, twoKeysInOneArmor, withForeignRevocation } from '../support/openpgp-keys.js';

const rejected = (promise: Promise<unknown>, message: RegExp) =>
  assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof KeyRejectedError, String(e));
    assert.equal(e.status, 400);
    assert.match(e.message, message);
    return true;
  });

describe('private key policy', () => {
  let alice: Awaited<ReturnType<typeof makePrivateKey>>;
  before(async () => {
    alice = await makePrivateKey('Alice@Example.com');
  });

  it('accepts a decrypted Curve25519 key with a user id for the email, deriving the public key', async () => {
    const stored = await validatePrivateKey(alice.armored, 'alice@example.com');
    assert.equal(stored.email, 'alice@example.com');
    assert.equal(stored.fingerprint, alice.fingerprint);
    const pub = await openpgp.readKey({ armoredKey: stored.publicKey });
    assert.equal(pub.isPrivate(), false);
    assert.equal(pub.getFingerprint().toUpperCase(), alice.fingerprint);
    const priv = await openpgp.readPrivateKey({ armoredKey: stored.privateKey });
    assert.equal(priv.isDecrypted(), true);
  });

  it('accepts RSA 2048 and refuses RSA 1024', async () => {
    const rsa = await makePrivateKey('rsa@example.com', { type: 'rsa', rsaBits: 2048 });
    assert.equal((await validatePrivateKey(rsa.armored, 'rsa@example.com')).fingerprint, rsa.fingerprint);
    const weak = await makePrivateKey('weak@example.com', { type: 'rsa', rsaBits: 1024 });
    await rejected(validatePrivateKey(weak.armored, 'weak@example.com'), /2048|self-signature/);
  });

  it('refuses what is not a decrypted private key of this user', async () => {
    await rejected(validatePrivateKey('hello', 'alice@example.com'), /Not an armored OpenPGP private key/);
    await rejected(validatePrivateKey(alice.publicKey, 'alice@example.com'), /public key/);
    await rejected(validatePrivateKey(alice.armored.replace(/\n[A-Za-z0-9+/]{20}/, '\nAAAAAAAAAAAAAAAAAAAA'), 'alice@example.com'), /Not a valid OpenPGP private key|self-signature/);
    const encrypted = await makePrivateKey('enc@example.com', { passphrase: 'secret passphrase' });
    await rejected(validatePrivateKey(encrypted.armored, 'enc@example.com'), /encrypted/);
    const expired = await makePrivateKey('old@example.com', { expired: true });
    await rejected(validatePrivateKey(expired.armored, 'old@example.com'), /expired/);
    await rejected(validatePrivateKey(alice.armored, 'bob@example.com'), /no user id for bob@example.com/);
    const bob = await makePrivateKey('bob@example.com');
    await rejected(validatePrivateKey(`${alice.armored}\n${bob.armored}`, 'alice@example.com'), /Exactly one private key is expected, found 2 armored blocks/);
    const both = await twoKeysInOneArmor(alice.armored, bob.armored);
    await rejected(validatePrivateKey(both, 'alice@example.com'), /Exactly one private key is expected, found 2$/);
  });

  it('takes a revoked or expired key only as an update of a fingerprint the owner holds', async () => {
    const revokedAlice = await revoked(alice.armored);
    const holds = (fingerprints: string[]) => async () => fingerprints;
    await rejected(validatePrivateKey(revokedAlice, 'alice@example.com'), /The key is revoked/);
    await rejected(validatePrivateKey(revokedAlice, 'alice@example.com', {}, new Date(), holds(['0'.repeat(40)])), /The key is revoked/);
    const update = await validatePrivateKey(revokedAlice, 'alice@example.com', {}, new Date(), holds([alice.fingerprint]));
    assert.equal(update.condition, 'revoked');
    assert.equal(update.fingerprint, alice.fingerprint);
    assert.equal(await (await openpgp.readKey({ armoredKey: update.publicKey })).isRevoked(), true, 'the public key carries the revocation');
    const expired = await makePrivateKey('old@example.com', { expired: true });
    await rejected(validatePrivateKey(expired.armored, 'old@example.com', {}, new Date(), holds([])), /expired/);
    assert.equal((await validatePrivateKey(expired.armored, 'old@example.com', {}, new Date(), holds([expired.fingerprint]))).condition, 'expired');
    assert.equal((await validatePrivateKey(alice.armored, 'alice@example.com')).condition, 'valid');
    // A revocation signature made by another key revokes nothing: the key stays valid.
    const other = await makePrivateKey('mallory@example.com');
    const forged = await validatePrivateKey(await withForeignRevocation(alice.armored, other.armored), 'alice@example.com');
    assert.equal(forged.condition, 'valid');
    // Still the owner's key: a revoked key of someone else is refused whoever holds what.
    await rejected(validatePrivateKey(revokedAlice, 'bob@example.com', {}, new Date(), holds([alice.fingerprint])), /no user id for bob@example.com/);
  });

  it('checks what a legacy client claims about its key', async () => {
    const bob = await makePrivateKey('bob@example.com');
    const ok = await validatePrivateKey(alice.armored, 'alice@example.com', { publicKey: alice.publicKey, fingerprint: alice.fingerprint.toLowerCase(), longid: alice.fingerprint.slice(-16) });
    assert.equal(ok.fingerprint, alice.fingerprint);
    await rejected(validatePrivateKey(alice.armored, 'alice@example.com', { fingerprint: bob.fingerprint }), /fingerprint sent does not match/);
    await rejected(validatePrivateKey(alice.armored, 'alice@example.com', { longid: bob.fingerprint.slice(-16) }), /longid sent does not match/);
    await rejected(validatePrivateKey(alice.armored, 'alice@example.com', { publicKey: bob.publicKey }), /public key sent does not match/);
  });

  describe('user ids under the one email rule', () => {
    const LOOKALIKES: [string, string][] = [
      ['U+212A KELVIN SIGN', '\u212Aate@example.com'],
      ['U+0130', 'kate\u0130@example.com'],
      ['a fullwidth k', '\uFF4Bate@example.com'],
      ['ESC', 'kate\x1b@example.com'],
      ['NUL', 'kate\0@example.com'],
      ['a quote', '"kate"@example.com'],
    ];

    for (const [name, email] of LOOKALIKES) {
      it(`does not count a user id with ${name} as kate@example.com's`, async () => {
        const key = await makePrivateKeyWithUserIds([`Kate <${email}>`]);
        const users = (await openpgp.readPrivateKey({ armoredKey: key.armored })).users.map((u) => u.userID?.email);
        assert.deepEqual(users, [email], 'OpenPGP.js reads the user id as written');
        await rejected(validatePrivateKey(key.armored, 'kate@example.com'), /^The key has no user id for kate@example.com$/);
      });
    }

    it("accepts a key with the owner's user id, keeping its other user ids as they are", async () => {
      const key = await makePrivateKeyWithUserIds(['Kate <\u212Aate@example.com>', 'Kate <Kate@Example.com>', 'K <kate\x1b@example.com>']);
      const stored = await validatePrivateKey(key.armored, 'kate@example.com');
      assert.equal(stored.fingerprint, key.fingerprint);
      const pub = await openpgp.readKey({ armoredKey: stored.publicKey });
      assert.deepEqual(pub.getUserIDs(), ['Kate <\u212Aate@example.com>', 'Kate <Kate@Example.com>', 'K <kate\x1b@example.com>']);
    });

    it('refuses to be asked for an owner that is not a normalised email (a programming error)', async () => {
      await assert.rejects(validatePrivateKey(alice.armored, 'Alice@Example.com'), TypeError);
      await assert.rejects(validatePrivateKey(alice.armored, '\u212Aate@example.com'), TypeError);
    });
  });
});
