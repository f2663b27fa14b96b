import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ExportFileError, FORMAT_VERSION, parseExport, PLAIN_FORMAT, readPassphraseFile, serializeExport, type ExportDocument } from '../../src/cli/key-export-format.js';

const DOC: ExportDocument = {
  format: PLAIN_FORMAT,
  version: FORMAT_VERSION,
  exportedAt: '2026-01-01T00:00:00.000Z',
  orgId: 'format-test',
  store: 'EncryptedDbStore',
  keys: [{ email: 'a@a.test', fingerprint: 'AB'.repeat(20), privateKey: '-----BEGIN PGP PRIVATE KEY BLOCK-----\nsecret material\n', publicKey: 'public' }],
};
const PASSPHRASE = 'format test passphrase';

describe('export file format', () => {
  it('round-trips plain and encrypted, and the encrypted file holds nothing readable', () => {
    assert.deepEqual(parseExport(serializeExport(DOC, undefined), undefined), { doc: DOC, encrypted: false });
    const sealed = serializeExport(DOC, PASSPHRASE);
    for (const needle of ['secret material', 'a@a.test', 'format-test', PASSPHRASE]) assert.equal(sealed.toString().includes(needle), false, needle);
    assert.deepEqual(parseExport(sealed, PASSPHRASE), { doc: DOC, encrypted: true });
    assert.notDeepEqual(serializeExport(DOC, PASSPHRASE), sealed, 'a fresh salt and iv every time');
  });

  it('refuses a wrong passphrase and any altered byte or parameter', () => {
    const envelope = JSON.parse(serializeExport(DOC, PASSPHRASE).toString()) as { ciphertext: string; cipher: { iv: string }; kdf: Record<string, unknown> };
    const attempt = (e: unknown, passphrase = PASSPHRASE) => () => parseExport(Buffer.from(JSON.stringify(e)), passphrase);
    assert.throws(attempt(envelope, 'another passphrase'), /wrong passphrase/);
    const flipped = Buffer.from(envelope.ciphertext, 'base64');
    flipped[5] = flipped[5]! ^ 1;
    assert.throws(attempt({ ...envelope, ciphertext: flipped.toString('base64') }), /wrong passphrase, or the file was damaged or altered/);
    const iv = Buffer.from(envelope.cipher.iv, 'base64');
    iv[0] = iv[0]! ^ 1;
    assert.throws(attempt({ ...envelope, cipher: { ...envelope.cipher, iv: iv.toString('base64') } }), /damaged or altered/);
    assert.throws(attempt({ ...envelope, kdf: { ...envelope.kdf, p: 2 } }), /damaged or altered/);
  });

  it('refuses key derivation costs a crafted file could exhaust memory with, before deriving', () => {
    const envelope = JSON.parse(serializeExport(DOC, PASSPHRASE).toString()) as { ciphertext: string; cipher: { iv: string }; kdf: Record<string, unknown> };
    for (const kdf of [{ N: 2 ** 24 }, { N: 1000 }, { N: 2 ** 10 }, { r: 1000 }, { p: 0 }, { algorithm: 'pbkdf2' }, { salt: '' }]) {
      const started = Date.now();
      assert.throws(() => parseExport(Buffer.from(JSON.stringify({ ...envelope, kdf: { ...envelope.kdf, ...kdf } })), PASSPHRASE), /unacceptable key derivation/, JSON.stringify(kdf));
      assert.ok(Date.now() - started < 100, 'refused without deriving');
    }
  });

  it('names what is wrong with a file that is not an export', () => {
    const cases: [string, RegExp][] = [
      ['not json', /not JSON/],
      ['[]', /not JSON/],
      ['{"format":"something-else","version":1,"keys":[]}', /Not an EKM key export/],
      ['{"format":"flowcrypt-ekm-keys","version":2,"keys":[]}', /Unsupported export version 2/],
      ['{"format":"flowcrypt-ekm-keys","version":1}', /no "keys" list/],
      ['{"format":"flowcrypt-ekm-keys","version":1,"keys":[{"email":"a@a.test"}]}', /Key #1 .*"privateKey"/],
      ['{"format":"flowcrypt-ekm-keys-encrypted","version":1}', /encrypted: give its passphrase/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseExport(Buffer.from(text), undefined), (e: unknown) => e instanceof ExportFileError && message.test(e.message), text);
    }
  });

  it('reads a passphrase file without its trailing line break, and refuses a short one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-passphrase-'));
    try {
      writeFileSync(join(dir, 'unix'), `${PASSPHRASE}\n`);
      writeFileSync(join(dir, 'windows'), `${PASSPHRASE}\r\n`);
      writeFileSync(join(dir, 'bare'), PASSPHRASE);
      writeFileSync(join(dir, 'short'), 'abc\n');
      for (const f of ['unix', 'windows', 'bare']) assert.equal(readPassphraseFile(join(dir, f)), PASSPHRASE);
      assert.throws(() => readPassphraseFile(join(dir, 'short')), /shorter than 8 characters/);
      assert.throws(() => readPassphraseFile(join(dir, 'missing')), (e: unknown) => e instanceof ExportFileError && e.message.includes('ENOENT'));
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
