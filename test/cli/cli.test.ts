import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import { runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { makePrivateKeyWithUserIds } from '../support/openpgp-keys.js';
import { freePort } from '../../testbed/processes.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

const version = (JSON.parse(readFileSync(resolve(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string }).version;

const properties = (dir: string, extra: Record<string, string> = {}) => ({
  ...baseProperties({ orgId: 'cli.org', audience: 'cli-client' }),
  ...encryptedDbProperties(join(dir, 'data'), 'cli passphrase 9d8e'),
  'api.hostname': '127.0.0.1',
  ...extra,
});

describe('command line', () => {
  it('prints the version and the help', async () => {
    const v = await runEkm(['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.output, `flowcrypt-ekm ${version}\n`);
    const h = await runEkm(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.output, /--test-store-connection/);
    assert.match(h.output, /--config=<file>/);
  });

  it('refuses unknown arguments with the usage and exit code 2', async () => {
    const r = await runEkm(['--verison']);
    assert.equal(r.code, 2);
    assert.match(r.output, /Unknown option '--verison'/);
    assert.match(r.output, /Usage: flowcrypt-ekm/);
  });

  it('tests the store connection with the documented steps and the latency', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-cli-'));
    const config = writeProperties(dir, properties(dir));
    const r = await runEkm([`--config=${config}`, '--test-store-connection']);
    assert.equal(r.code, 0, r.output);
    const steps = ['Registering EncryptedDbStore as Store implementation', 'initiating test', 'store session started successfully',
      'testing store search command', 'round trip latency: ', 'closing session', 'success'];
    let at = 0;
    for (const step of steps) {
      const found = r.output.indexOf(step, at);
      assert.ok(found >= at, `missing or out of order: ${step}\n${r.output}`);
      at = found;
    }
    assert.match(r.output, /round trip latency: \d+(\.\d)?ms/);
  });

  it('warns about stored keys the email rule would not file under their owner, escaped, and still exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-cli-'));
    const store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder: join(dir, 'data'), encryptionKey: 'cli passphrase 9d8e' }, { logger: new MemoryLogger() });
    const kate = await makePrivateKeyWithUserIds(['Kate <kate@example.com>']);
    const lookalike = await makePrivateKeyWithUserIds(['Kate <\u212Aate@example.com>']);
    const record = async (email: string, key: { armored: string; fingerprint: string }) => {
      const publicKey = (await openpgp.readPrivateKey({ armoredKey: key.armored })).toPublic().armor();
      // Straight into the store, as the old rule let such records in: no policy on this path.
      await store.upsert({ email, fingerprint: key.fingerprint, privateKey: key.armored, publicKey });
    };
    await record('kate@example.com', kate);
    await record('kate@example.com', lookalike);
    const fullwidth = await makePrivateKeyWithUserIds(['K <\uFF4Bate@example.com>']);
    await record('\uFF4Bate@example.com', fullwidth);
    const escape = await makePrivateKeyWithUserIds(['K <kate\x1b[2J@example.com>']);
    await record('kate\x1b[2J@example.com', escape);
    await store.close();

    const r = await runEkm([`--config=${writeProperties(dir, properties(dir))}`, '--test-store-connection']);
    assert.equal(r.code, 0, r.output);
    // The log lines are JSON: the messages as an operator reads them.
    const messages = r.output.trim().split('\n').map((line) => (JSON.parse(line) as { message: string }).message).join('\n');
    assert.match(messages, /3 of 4 stored keys were stored before the email rule and do not pass it/);
    assert.match(messages, new RegExp(`key ${lookalike.fingerprint} of kate@example\\.com: no user id of the key names the owner in ASCII`));
    assert.match(messages, new RegExp(`key ${fullwidth.fingerprint} of \\\\uFF4Bate@example\\.com: the owner email contains the character U\\+FF4B`));
    assert.match(messages, new RegExp(`key ${escape.fingerprint} of kate\\\\u001B\\[2J@example\\.com: the owner email contains the control character U\\+001B`));
    assert.equal(r.output.includes(kate.fingerprint), false, "Kate's own key passes");
    assert.match(r.output, /success/);
    assert.equal(/[\u0000-\u0008\u000b-\u001f\u007f\uff4b]/.test(messages), false, 'no raw control character or lookalike printed');
    assert.equal(/PRIVATE KEY|PUBLIC KEY/.test(r.output), false, 'no key material');
  });

  it('fails the store test with exit 78 (a configuration error) on a wrong passphrase, without printing it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-cli-'));
    assert.equal((await runEkm([`--config=${writeProperties(dir, properties(dir))}`, '--test-store-connection'])).code, 0);
    const wrong = writeProperties(dir, properties(dir, { 'store.db.encryption.key': 'not the passphrase 77' }), 'wrong.properties');
    const r = await runEkm([`--config=${wrong}`, '--test-store-connection']);
    assert.equal(r.code, 78);
    assert.match(r.output, /failure: .*wrong passphrase/);
    assert.equal(r.output.includes('not the passphrase 77'), false);
    assert.equal(r.output.includes('cli passphrase 9d8e'), false);
  });

  it('refuses to start on a config error with one clear line and exit 78 (EX_CONFIG), before forking', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-cli-'));
    const cases: [Record<string, string>, RegExp][] = [
      [{ 'api.port': 'abc' }, /\[abc\] is not a valid option for property \[api.port\]/],
      [{ 'api.prot': '80' }, /Unknown property 'api.prot' .*did you mean 'api.port'\?/],
      [{ 'store.type': 'FileStore' }, /\[FileStore\] is not a valid option for property \[store.type\]; valid options: EncryptedDbStore, Pkcs11Store, KmipStore/],
    ];
    for (const [extra, message] of cases) {
      const r = await runEkm([`--config=${writeProperties(dir, properties(dir, extra))}`]);
      assert.equal(r.code, 78, r.output);
      assert.match(r.output, message);
      assert.equal(r.output.trim().split('\n').length, 1, r.output);
    }
    const missing = await runEkm([], { cwd: mkdtempSync(join(tmpdir(), 'ekm-empty-')) });
    assert.equal(missing.code, 78);
    assert.match(missing.output, /Config file not found: tried .* --config=<file>/);
  });

  it('refuses a keystore with the wrong password, naming the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-cli-'));
    const pki = new TestPki();
    try {
      const file = pki.pkcs12(pki.issue('server', { hosts: ['127.0.0.1'] }), 'right password', 'openssl-legacy');
      const r = await runEkm([`--config=${writeProperties(dir, properties(dir, { 'api.https.enabled': 'true', 'api.https.key.file': file, 'api.https.key.password': 'kt-pw-5521' }))}`]);
      assert.equal(r.code, 78);
      assert.match(r.output, new RegExp(`api.https.key.file: wrong password for keystore ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      assert.equal(r.output.includes('kt-pw-5521'), false, 'the password given is never shown');
    } finally {
      pki.remove();
    }
  });

  it('stops with the reason instead of forking forever when workers fail at start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-cli-'));
    const port = await freePort();
    const blocker = createServer().listen(port, '127.0.0.1');
    await once(blocker, 'listening');
    try {
      const started = Date.now();
      const r = await runEkm([`--config=${writeProperties(dir, properties(dir, { 'api.port': String(port), 'api.workers': '2' }))}`]);
      assert.equal(r.code, 1, r.output);
      assert.match(r.output, /Workers keep failing at start, stopping the service: .*EADDRINUSE/);
      assert.ok(Date.now() - started < 30_000);
    } finally {
      blocker.close();
    }
  });
});
