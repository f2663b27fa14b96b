import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import * as openpgp from 'openpgp';
import { KeyRejectedError } from '../../src/errors.js';
import { checkKeyStructure, MAX_KEY_BYTES, MAX_SIGNATURES, MAX_SIGNATURES_PER_COMPONENT, MAX_SUBKEYS, MAX_USER_IDS } from '../../src/keys/key-structure-check.js';
import { validatePrivateKey } from '../../src/keys/private-key-policy.js';
import { craftedDsaKey, craftedRsaKey, mpi, rsaExponentBomb, withRepeatedSelfSignature, withUserAttribute } from '../support/crafted-keys.js';
import { makePrivateKey } from '../support/openpgp-keys.js';

/**
 * Refusals before crypto: each crafted key must be refused with its reason, fast. On this shared
 * 2-core machine parsing a key takes 1-60 ms, up to 0.6 s at a load average of 20; 1 s leaves
 * room for that and stays far below the 10-40 s the crypto of the report's key costs.
 */
const QUICK_MS = 1_000;

async function refusedQuickly(t: TestContext, label: string, armored: string, email: string, message: RegExp): Promise<void> {
  const started = performance.now();
  await assert.rejects(validatePrivateKey(armored, email), (e: unknown) => {
    assert.ok(e instanceof KeyRejectedError, String(e));
    assert.equal(e.status, 400);
    assert.match(e.message, message);
    return true;
  });
  const ms = performance.now() - started;
  t.diagnostic(`${label} (${armored.length} bytes armored): refused in ${ms.toFixed(1)} ms`);
  assert.ok(ms < QUICK_MS, `${label} took ${ms.toFixed(0)} ms to refuse`);
}

describe('key structure limits, checked before any signature is verified', () => {
  before(async () => {
    // Load OpenPGP.js in this thread and start the verification thread once, outside the timings.
    const warm = await makePrivateKey('warm@example.com');
    await validatePrivateKey(warm.armored, 'warm@example.com');
  });

  it("refuses the report's key (16384-bit modulus and exponent, SHA-224 self-signatures) in milliseconds", async (t) => {
    const bomb = rsaExponentBomb('mallory@example.com', 2);
    assert.ok(bomb.length > 11_000 && bomb.length < 20_000, String(bomb.length));
    await refusedQuickly(t, 'RSA 16384, 16384-bit exponent', bomb, 'mallory@example.com', /at most 8192 bits, this one has 16384/);
  });

  it('refuses an RSA modulus over 8192 or under 2048 bits and a hostile public exponent', async (t) => {
    await refusedQuickly(t, 'RSA 8200', craftedRsaKey('m@example.com', { modulusBits: 8200 }), 'm@example.com', /at most 8192 bits, this one has 8200/);
    await refusedQuickly(t, 'RSA 1536', craftedRsaKey('m@example.com', { modulusBits: 1536 }), 'm@example.com', /at least 2048 bits, this one has 1536/);
    const exponent = (e: number[]) => Buffer.from([0, e.length * 8 - Math.clz32(e[0]!) + 24, ...e]);
    await refusedQuickly(t, 'RSA 4096, 33-bit exponent', craftedRsaKey('m@example.com', { modulusBits: 4096, exponent: mpi(33, { odd: true }) }), 'm@example.com', /public exponent/);
    await refusedQuickly(t, 'RSA 4096, 16384-bit exponent', craftedRsaKey('m@example.com', { modulusBits: 4096, exponent: mpi(16384, { odd: true }) }), 'm@example.com', /public exponent/);
    await refusedQuickly(t, 'RSA 4096, even exponent', craftedRsaKey('m@example.com', { modulusBits: 4096, exponent: exponent([1, 0, 0]) }), 'm@example.com', /public exponent/);
    await refusedQuickly(t, 'RSA 4096, exponent 1', craftedRsaKey('m@example.com', { modulusBits: 4096, exponent: exponent([1]) }), 'm@example.com', /public exponent/);
    // 2^32 - 1 (32 bits, odd) passes the structure; the made-up signature then fails verification.
    await assert.rejects(validatePrivateKey(craftedRsaKey('m@example.com', { modulusBits: 4096, exponent: exponent([0xff, 0xff, 0xff, 0xff]) }), 'm@example.com'), /no valid self-signature/);
  });

  it('refuses RSA signatures over hashes Node does not verify natively (SHA-224), and DSA keys', async (t) => {
    await refusedQuickly(t, 'RSA 4096, SHA-224 self-signature', craftedRsaKey('m@example.com', { modulusBits: 4096, hash: 'sha224' }), 'm@example.com', /RSA signatures made with sha224 are not accepted/);
    await refusedQuickly(t, 'DSA', craftedDsaKey('m@example.com'), 'm@example.com', /Key algorithm dsa is not accepted/);
  });

  it(`refuses 850 copies of one self-signature (at most ${MAX_SIGNATURES_PER_COMPONENT} per component) and stores repeats within the limit once`, async (t) => {
    const real = await makePrivateKey('dup@example.com');
    // 850 copies also pass the size limit; fewer meet the count first.
    await refusedQuickly(t, '850 identical self-signatures', await withRepeatedSelfSignature(real.armored, 850), 'dup@example.com', /too large/);
    await refusedQuickly(t, '40 identical self-signatures', await withRepeatedSelfSignature(real.armored, 40), 'dup@example.com', new RegExp(`at most ${MAX_SIGNATURES_PER_COMPONENT} signatures`));
    const stored = await validatePrivateKey(await withRepeatedSelfSignature(real.armored, 5), 'dup@example.com');
    const key = await openpgp.readPrivateKey({ armoredKey: stored.privateKey });
    assert.equal(key.users[0]!.selfCertifications.length, 1);
    assert.equal((await openpgp.readKey({ armoredKey: stored.publicKey })).users[0]!.selfCertifications.length, 1);
    assert.equal(stored.fingerprint, real.fingerprint);
  });

  it('refuses user attribute packets (photo ids)', async (t) => {
    const real = await makePrivateKey('photo@example.com');
    await refusedQuickly(t, 'user attribute', await withUserAttribute(real.armored), 'photo@example.com', /User attributes \(photo ids\) are not accepted/);
  });

  it(`refuses more than ${MAX_USER_IDS} user ids, ${MAX_SUBKEYS} subkeys or ${MAX_SIGNATURES} signatures, and a key over ${MAX_KEY_BYTES} bytes`, async (t) => {
    const emails = Array.from({ length: MAX_USER_IDS + 1 }, (_, i) => `many${i}@example.com`);
    const many = await openpgp.generateKey({ userIDs: emails.map((email) => ({ email })), format: 'armored' });
    await refusedQuickly(t, `${emails.length} user ids`, many.privateKey, 'many0@example.com', new RegExp(`at most ${MAX_USER_IDS} user ids, this one has ${emails.length}`));
    const subkeys = await openpgp.generateKey({ userIDs: [{ email: 'subs@example.com' }], subkeys: Array.from({ length: MAX_SUBKEYS + 1 }, () => ({})), format: 'armored' });
    await refusedQuickly(t, `${MAX_SUBKEYS + 1} subkeys`, subkeys.privateKey, 'subs@example.com', new RegExp(`at most ${MAX_SUBKEYS} subkeys, this one has ${MAX_SUBKEYS + 1}`));
    // Five user ids with 30 signatures each: every component within its limit, the key over the total.
    const five = await openpgp.generateKey({ userIDs: emails.slice(0, 5).map((email) => ({ email })), format: 'object' });
    const packets = new openpgp.PacketList<openpgp.AnyPacket>();
    for (const p of five.privateKey.toPacketList()) {
      packets.push(p);
      if (p instanceof openpgp.SignaturePacket && p.signatureType === openpgp.enums.signature.certPositive) for (let i = 1; i < 30; i++) packets.push(p);
    }
    await refusedQuickly(t, '150 signatures on 5 user ids', openpgp.armor(openpgp.enums.armor.privateKey, packets.write()), 'many0@example.com', new RegExp(`at most ${MAX_SIGNATURES} signatures`));
    const long = await openpgp.generateKey({ userIDs: emails.slice(0, 30).map((email) => ({ name: 'x'.repeat(2500), email })), format: 'armored' });
    await refusedQuickly(t, '30 user ids of 2.5 KB', long.privateKey, 'many0@example.com', /too large/);
  });

  it('accepts every kind of key the apps and common tools make', async () => {
    const kinds: { label: string; options: Record<string, unknown> }[] = [
      { label: 'curve25519 (legacy v4, the apps)', options: { type: 'ecc', curve: 'curve25519Legacy' } },
      { label: 'RSA 2048', options: { type: 'rsa', rsaBits: 2048 } },
      { label: 'RSA 3072', options: { type: 'rsa', rsaBits: 3072 } },
      { label: 'RSA 4096', options: { type: 'rsa', rsaBits: 4096 } },
      { label: 'NIST P-256', options: { type: 'ecc', curve: 'nistP256' } },
      { label: 'NIST P-384', options: { type: 'ecc', curve: 'nistP384' } },
      { label: 'NIST P-521', options: { type: 'ecc', curve: 'nistP521' } },
      { label: 'v6 Ed25519/X25519 (RFC 9580)', options: { type: 'curve25519', config: { v6Keys: true } } },
      { label: 'v6 Ed448/X448 (RFC 9580)', options: { type: 'curve448', config: { v6Keys: true } } },
    ];
    for (const { label, options } of kinds) {
      const email = 'kind@example.com';
      const { privateKey } = await openpgp.generateKey({ userIDs: [{ email }, { email: 'other@example.org' }], subkeys: [{}, { sign: true }], format: 'armored', ...options } as Parameters<typeof openpgp.generateKey>[0] & { format: 'armored' });
      const stored = await validatePrivateKey(privateKey, email).catch((e: unknown) => assert.fail(`${label}: ${(e as Error).message}`));
      assert.match(stored.publicKey, /BEGIN PGP PUBLIC KEY BLOCK/, label);
    }
  });

  it('accepts keys made by GnuPG: RSA 4096, ed25519/cv25519, and brainpool curves through the structure check', async () => {
    // OpenPGP.js cannot make brainpool keys in Node, nor verify their signatures here (it lacks its
    // optional eckey-utils module: "no valid self-signature", on main as well); GnuPG makes them.
    const home = mkdtempSync(join(tmpdir(), 'ekm-gpg-keys-'));
    const env = { ...process.env, GNUPGHOME: home, LC_ALL: 'C' };
    const gpgKey = (algorithm: string, email: string) => {
      execFileSync('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', `GnuPG <${email}>`, algorithm, 'default', 'never'], { env, stdio: 'ignore' });
      return execFileSync('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--armor', '--export-secret-keys', email], { env, encoding: 'utf8' });
    };
    try {
      for (const algorithm of ['rsa4096', 'future-default']) {
        const email = `gpg-${algorithm}@example.com`;
        await validatePrivateKey(gpgKey(algorithm, email), email).catch((e: unknown) => assert.fail(`${algorithm}: ${(e as Error).message}`));
      }
      for (const algorithm of ['brainpoolP256r1', 'brainpoolP384r1', 'brainpoolP512r1']) {
        const { data } = await openpgp.unarmor(gpgKey(algorithm, `gpg-${algorithm.toLowerCase()}@example.com`));
        const checked = await checkKeyStructure(data as Uint8Array).catch((e: unknown) => assert.fail(`${algorithm}: ${(e as Error).message}`));
        assert.equal((await openpgp.readKey({ binaryKey: checked })).getAlgorithmInfo().curve, algorithm);
      }
    } finally {
      execFileSync('gpgconf', ['--kill', 'all'], { env, stdio: 'ignore' });
      rmSync(home, { recursive: true, force: true });
    }
  });
});
