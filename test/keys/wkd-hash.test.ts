import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { isWkdHashOf, WKD_HASH_PATTERN, wkdHash, zBase32 } from '../../src/keys/wkd-hash.js';

/** GnuPG's own WKD hash tool (Debian: package gpg-wks-client, not on the PATH). */
const GPG_WKS_CLIENT = '/usr/lib/gnupg/gpg-wks-client';

describe('z-base-32', () => {
  it('encodes the reference examples', () => {
    // Vectors of the z-base-32 specification (bit strings padded to whole characters).
    assert.equal(zBase32(Uint8Array.of()), '');
    assert.equal(zBase32(Uint8Array.of(0x00)), 'yy');
    assert.equal(zBase32(Uint8Array.of(0xf0, 0xbf, 0xc7)), '6n9hq');
    assert.equal(zBase32(Uint8Array.of(0xd4, 0x7a, 0x04)), '4t7ye');
    assert.equal(zBase32(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff)), '99999999');
  });
});

describe('WKD hash', () => {
  it('is the example of draft-koch-openpgp-webkey-service section 3.1', () => {
    assert.equal(wkdHash('Joe.Doe'), 'iy9q119eutrkn8s1mk4r39qejnbu3n5q');
    assert.match(wkdHash('Joe.Doe'), WKD_HASH_PATTERN);
  });

  it("equals GnuPG's gpg-wks-client --print-wkd-hash", () => {
    const locals = ['joe.doe', 'Joe.Doe', 'ALICE', 'a', 'user+tag', 'first_last-2', 'x'.repeat(64), 'Ünïcode', 'o\'brien', '1234567890'];
    const input = locals.map((l) => `${l}@example.org`).join('\n') + '\n';
    const lines = execFileSync(GPG_WKS_CLIENT, ['--print-wkd-hash'], { input, encoding: 'utf8' }).trim().split('\n');
    assert.equal(lines.length, locals.length);
    locals.forEach((local, i) => {
      const gnupgHash = lines[i]!.split(' ')[0];
      assert.equal(wkdHash(local), gnupgHash, local);
      assert.ok(isWkdHashOf(gnupgHash!, local));
    });
  });

  it('accepts the ASCII-lowercased hash only: a Unicode-lowercased one names no mailbox', () => {
    assert.ok(isWkdHashOf(wkdHash('kate'), 'Kate'));
    assert.ok(!isWkdHashOf(wkdHash('kate'), '\u212Aate'), 'U+212A KELVIN SIGN lowercases to k in Unicode only');
    assert.ok(!isWkdHashOf(wkdHash('ünïcode'), 'Ünïcode'));
    assert.ok(!isWkdHashOf(wkdHash('bob'), 'alice'));
  });
});
