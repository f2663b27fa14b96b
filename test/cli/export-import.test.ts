import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { exportKeys } from '../../src/cli/export-keys.js';
import { importKeys } from '../../src/cli/import-keys.js';
import { parseConfig } from '../../src/config/load-config.js';
import { validatePrivateKey } from '../../src/keys/private-key-policy.js';
import { DB_FILE_NAME } from '../../src/stores/encrypted-db-store.js';
import { openStore } from '../../src/stores/store-registry.js';
import type { StoredKey } from '../../src/stores/store.js';
import { EkmDaemon, runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { PykmipServer } from '../../testbed/pykmip-server.js';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken } from '../../testbed/softhsm-token.js';
import { makePrivateKey, makePrivateKeyWithUserIds, withNewExpiry } from '../support/openpgp-keys.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties } from '../support/base-properties.js';

const COMMON = {
  ...baseProperties({ orgId: 'export-test.org', audience: 'export-test' }),
  'org.domains': 'a.test,b.test',
} as const;

/** A fresh, empty backend of one store type: its `store.*` properties, and how to tear it down. */
interface TargetStore {
  readonly name: string;
  setup(dir: string): Promise<{ properties: Record<string, string>; cleanup?: () => Promise<void> }>;
}

const encryptedDbStore = (dir: string) => ({ 'store.type': 'EncryptedDbStore', 'store.db.folder': join(dir, 'db'), 'store.db.encryption.key': 'target store passphrase' });

/**
 * Stores an export is imported into. Another store type joins the round trip with one line here
 * (starting its server or token in `setup`, e.g. with the helpers in testbed/).
 */
const TARGET_STORES: readonly TargetStore[] = [
  { name: 'EncryptedDbStore', setup: async (dir) => ({ properties: encryptedDbStore(dir) }) },
  {
    name: 'Pkcs11Store',
    setup: async () => {
      const token = createSoftHsmToken();
      useSoftHsmToken(token);
      return { properties: { 'store.type': 'Pkcs11Store', 'store.pkcs11.module': SOFTHSM2_MODULE, 'store.pkcs11.pin': token.userPin }, cleanup: async () => token.remove() };
    },
  },
  {
    name: 'KmipStore',
    setup: async () => {
      const kmip = await PykmipServer.start();
      return { properties: kmip.properties(), cleanup: () => kmip.remove() };
    },
  },
];

const SOURCE_STORE = (dir: string) => ({ 'store.type': 'EncryptedDbStore', 'store.db.folder': join(dir, 'db'), 'store.db.encryption.key': 'source store passphrase' });

/** Every key of the store of this config file, sorted, for comparing stores. */
async function contents(configFile: string): Promise<StoredKey[]> {
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile);
  const store = await openStore(config.store, { logger: new MemoryLogger() });
  try {
    const keys: StoredKey[] = [];
    for await (const key of store.all()) keys.push(key);
    return keys.sort((x, y) => x.fingerprint.localeCompare(y.fingerprint));
  } finally {
    await store.close();
  }
}

async function seed(configFile: string, keys: readonly { email: string; armored: string }[]): Promise<void> {
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile);
  const store = await openStore(config.store, { logger: new MemoryLogger() });
  try {
    for (const k of keys) await store.upsert(await validatePrivateKey(k.armored, k.email));
  } finally {
    await store.close();
  }
}

/** A fresh folder `root/name` holding a config with this store's properties. */
function newConfig(root: string, name: string, store: Record<string, string>, extra: Record<string, string> = {}): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  return writeProperties(dir, { ...COMMON, ...store, ...extra });
}

describe('--export and --import', () => {
  let root: string;
  let source: string;
  let secrets: string[];
  const passphraseFile = () => {
    const file = join(root, 'passphrase');
    writeFileSync(file, 'correct horse battery staple export\n', { mode: 0o600 });
    return file;
  };

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'ekm-export-'));
    source = newConfig(root, 'source', SOURCE_STORE(join(root, 'source')));
    const keys = [
      { email: 'alice@a.test', ...(await makePrivateKey('alice@a.test')) },
      { email: 'alice@a.test', ...(await makePrivateKey('alice@a.test')) },
      { email: 'bob@b.test', ...(await makePrivateKey('bob@b.test', { type: 'rsa', rsaBits: 2048 })) },
      { email: 'carol@a.test', ...(await makePrivateKey('carol@a.test')) },
    ];
    secrets = keys.map((k) => k.armored);
    await seed(source, keys);
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  it('exports to a new 0600 file with a warning, and imports into every store type identically, twice', async () => {
    const file = join(root, 'plain.json');
    const exported = await runEkm([`--config=${source}`, `--export=${file}`]);
    assert.equal(exported.code, 0, exported.output);
    assert.match(exported.output, /WARNING: .*decrypted private keys/);
    assert.match(exported.output, /Exported 4 keys of 3 users from EncryptedDbStore to .*plain\.json \(not encrypted\)/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { format: string; keys: { email: string }[] };
    assert.equal(doc.format, 'flowcrypt-ekm-keys');
    assert.equal(doc.keys.length, 4);
    for (const secret of secrets) assert.equal(exported.output.includes(secret.slice(100, 160)), false, 'no key material in the output');

    const expected = await contents(source);
    for (const target of TARGET_STORES) {
      const dir = join(root, `target-${target.name}`);
      const { properties, cleanup } = await target.setup(dir);
      try {
        const config = newConfig(root, `target-${target.name}`, properties);
        const first = await runEkm([`--config=${config}`, `--import=${file}`]);
        assert.equal(first.code, 0, first.output);
        assert.match(first.output, /Imported 4 keys in .*: 4 added, 0 updated, 0 unchanged, 0 refused/);
        assert.deepEqual(await contents(config), expected, target.name);
        const second = await runEkm([`--config=${config}`, `--import=${file}`]);
        assert.equal(second.code, 0, second.output);
        assert.match(second.output, /Imported 4 keys in .*: 0 added, 0 updated, 4 unchanged, 0 refused/);
        assert.deepEqual(await contents(config), expected, `${target.name} after a second import`);
      } finally {
        // A PyKMIP server left running would keep the test process alive.
        await cleanup?.();
      }
    }
  });

  it('encrypts to a passphrase: nothing readable in the file, the wrong or no passphrase is refused', async () => {
    const file = join(root, 'encrypted.json');
    const exported = await runEkm([`--config=${source}`, `--export=${file}`, `--export-passphrase-file=${passphraseFile()}`]);
    assert.equal(exported.code, 0, exported.output);
    assert.match(exported.output, /\(encrypted\)/);
    assert.equal(exported.output.includes('correct horse'), false, 'the passphrase is never printed or logged');
    const text = readFileSync(file, 'utf8');
    assert.equal(JSON.parse(text).format, 'flowcrypt-ekm-keys-encrypted');
    for (const needle of ['PRIVATE KEY', 'alice', 'a.test', 'correct horse']) assert.equal(text.includes(needle), false, needle);

    const target = newConfig(root, 'encrypted-target', encryptedDbStore(join(root, 'encrypted-target')));
    const none = await runEkm([`--config=${target}`, `--import=${file}`]);
    assert.equal(none.code, 1);
    assert.match(none.output, /encrypted: give its passphrase with --import-passphrase-file/);
    const wrongFile = join(root, 'wrong-passphrase');
    writeFileSync(wrongFile, 'not the passphrase at all\n');
    const wrong = await runEkm([`--config=${target}`, `--import=${file}`, `--import-passphrase-file=${wrongFile}`]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.output, /wrong passphrase/);
    assert.equal(wrong.output.includes('not the passphrase'), false);
    assert.deepEqual(await contents(target), []);

    const tampered = JSON.parse(text) as { kdf: { N: number } };
    tampered.kdf.N = 2 ** 14;
    const tamperedFile = join(root, 'tampered.json');
    writeFileSync(tamperedFile, JSON.stringify(tampered));
    const refused = await runEkm([`--config=${target}`, `--import=${tamperedFile}`, `--import-passphrase-file=${passphraseFile()}`]);
    assert.equal(refused.code, 1);
    assert.match(refused.output, /wrong passphrase, or the file was damaged or altered/);

    const right = await runEkm([`--config=${target}`, `--import=${file}`, `--import-passphrase-file=${passphraseFile()}`]);
    assert.equal(right.code, 0, right.output);
    assert.deepEqual(await contents(target), await contents(source));
  });

  it('never overwrites a file, nor follows a symlink, and leaves no partial file when the store cannot be opened', async () => {
    const existing = join(root, 'existing.json');
    writeFileSync(existing, 'precious');
    const refused = await runEkm([`--config=${source}`, `--export=${existing}`]);
    assert.equal(refused.code, 1);
    assert.match(refused.output, /already exists; refusing to overwrite/);
    assert.equal(readFileSync(existing, 'utf8'), 'precious');

    const link = join(root, 'link.json');
    symlinkSync(join(root, 'link-target.json'), link);
    assert.equal((await runEkm([`--config=${source}`, `--export=${link}`])).code, 1);
    assert.equal(existsSync(join(root, 'link-target.json')), false);

    const wrongPassphrase = newConfig(root, 'wrong-db-passphrase', { ...SOURCE_STORE(join(root, 'source')), 'store.db.encryption.key': 'not it' });
    const out = join(root, 'never.json');
    const failed = await runEkm([`--config=${wrongPassphrase}`, `--export=${out}`]);
    assert.equal(failed.code, 78, 'a wrong passphrase is a configuration error (EX_CONFIG)');
    assert.match(failed.output, /wrong passphrase/);
    assert.equal(existsSync(out), false);
  });

  it('validates every key as PUT does and reports each refusal with its reason, importing the rest', async () => {
    const good = await makePrivateKey('dave@a.test');
    const expired = await makePrivateKey('erin@a.test', { expired: true });
    const outsider = await makePrivateKey('mallory@outside.test');
    const encrypted = await makePrivateKey('frank@a.test', { passphrase: 'locked' });
    const shared = await makePrivateKey(['gina@a.test', 'gina@b.test']);
    const other = await makePrivateKey('hank@a.test');
    const file = join(root, 'mixed.json');
    writeFileSync(file, JSON.stringify({
      format: 'flowcrypt-ekm-keys',
      version: 1,
      keys: [
        { email: 'Dave@A.test', privateKey: good.armored, fingerprint: good.fingerprint, publicKey: good.publicKey },
        { email: 'erin@a.test', privateKey: expired.armored },
        { email: 'mallory@outside.test', privateKey: outsider.armored },
        { email: 'frank@a.test', privateKey: encrypted.armored },
        { email: 'someone@a.test', privateKey: good.armored },
        { email: 'hank@a.test', privateKey: other.armored, fingerprint: good.fingerprint },
        { email: 'hank@a.test', privateKey: other.publicKey },
        { email: 'gina@a.test', privateKey: shared.armored },
        { email: 'gina@b.test', privateKey: shared.armored },
      ],
    }));
    const target = newConfig(root, 'mixed-target', encryptedDbStore(join(root, 'mixed-target')));
    const run = await runEkm([`--config=${target}`, `--import=${file}`]);
    assert.equal(run.code, 1, 'refusals make the exit code 1');
    assert.match(run.output, /Imported 9 keys in .*: 2 added, 0 updated, 0 unchanged, 7 refused/);
    assert.match(run.output, /refused: key #2 erin@a\.test .*: The key has expired/);
    assert.match(run.output, /refused: key #3 mallory@outside\.test .*outside\.test is not one of the domains/);
    assert.match(run.output, /refused: key #4 frank@a\.test .*encrypted/);
    assert.match(run.output, /refused: key #5 someone@a\.test .*no user id for someone@a\.test/);
    assert.match(run.output, /refused: key #6 hank@a\.test .*fingerprint sent does not match/);
    assert.match(run.output, /refused: key #7 hank@a\.test .*public key/);
    assert.match(run.output, /refused: key #9 gina@b\.test .*already stored for another user/);
    for (const k of [good, expired, outsider, encrypted, other]) assert.equal(run.output.includes(k.armored.slice(100, 160)), false);
    const stored = await contents(target);
    assert.deepEqual(stored.map((k) => k.email).sort(), ['dave@a.test', 'gina@a.test']);
  });

  it("refuses owners the email rule refuses and keys that only name a lookalike of their owner, showing them escaped", async () => {
    const lookalike = await makePrivateKeyWithUserIds(['Kate <\u212Aate@a.test>']);
    const file = join(root, 'lookalikes.json');
    writeFileSync(file, JSON.stringify({
      format: 'flowcrypt-ekm-keys',
      version: 1,
      keys: [
        { email: '\u212Aate@a.test', privateKey: lookalike.armored },
        { email: 'kate\x1b[2J@a.test', privateKey: lookalike.armored },
        { email: 'kate@a.test', privateKey: lookalike.armored },
      ],
    }));
    const target = newConfig(root, 'lookalike-target', encryptedDbStore(join(root, 'lookalike-target')));
    const run = await runEkm([`--config=${target}`, `--import=${file}`]);
    assert.equal(run.code, 1, run.output);
    assert.match(run.output, /Imported 3 keys in .*: 0 added, 0 updated, 0 unchanged, 3 refused/);
    assert.match(run.output, /refused: key #1 \\u212Aate@a\.test .*the email cannot be an identity: it contains the character U\+212A/);
    assert.match(run.output, /refused: key #2 kate\\u001B\[2J@a\.test .*control character U\+001B/);
    assert.match(run.output, /refused: key #3 kate@a\.test .*no user id for kate@a\.test/);
    assert.equal(/[\u0000-\u0008\u000b-\u001f\u007f\u212a]/.test(run.output), false, 'no raw control character or lookalike printed');
    assert.deepEqual(await contents(target), []);
  });

  it('holds each user to the per-user limits, refusing the excess with its line and still updating held keys', async () => {
    const ivy = await Promise.all([0, 1, 2].map(() => makePrivateKey('ivy@a.test')));
    const big = await makePrivateKey(['jack@a.test', ...Array.from({ length: 12 }, (_, i) => `jack.alias${i}@a.test`)], { type: 'rsa', rsaBits: 2048 });
    const small = await makePrivateKey('jack@a.test');
    const target = newConfig(root, 'limits-target', encryptedDbStore(join(root, 'limits-target')), {
      'api.keys.max.per.user': '2',
      // Room for the big key but not for the small one beside it.
      'api.keys.max.bytes.per.user': String(Buffer.byteLength(big.armored) + 100),
    });
    const write = (name: string, keys: { email: string; privateKey: string }[]) => {
      const file = join(root, name);
      writeFileSync(file, JSON.stringify({ format: 'flowcrypt-ekm-keys', version: 1, keys }));
      return file;
    };
    const first = await runEkm([`--config=${target}`, `--import=${write('limits.json', [...ivy.map((k) => ({ email: 'ivy@a.test', privateKey: k.armored })), { email: 'jack@a.test', privateKey: big.armored }, { email: 'jack@a.test', privateKey: small.armored }])}`]);
    assert.equal(first.code, 1, first.output);
    assert.match(first.output, /Imported 5 keys in .*: 3 added, 0 updated, 0 unchanged, 2 refused/);
    assert.match(first.output, new RegExp(`refused: key #3 ivy@a\\.test ${ivy[2]!.fingerprint}: at most 2 keys per user: ask your administrator to remove old ones`));
    assert.match(first.output, /refused: key #5 jack@a\.test .*: at most \d+ bytes of keys per user: ask your administrator to remove old ones/);
    // A held key still gets its update (a new expiry) at the limit.
    const renewed = await withNewExpiry(ivy[0]!.armored, 'ivy@a.test');
    const second = await runEkm([`--config=${target}`, `--import=${write('limits-update.json', [{ email: 'ivy@a.test', privateKey: renewed }])}`]);
    assert.equal(second.code, 0, second.output);
    assert.match(second.output, /1 updated/);
    const stored = await contents(target);
    assert.deepEqual(stored.filter((k) => k.email === 'ivy@a.test').map((k) => k.fingerprint).sort(), [ivy[0]!.fingerprint, ivy[1]!.fingerprint].sort());
    assert.deepEqual(stored.filter((k) => k.email === 'jack@a.test').map((k) => k.fingerprint), [big.fingerprint]);
  });

  it('shows progress on a terminal, and only the summary elsewhere', async () => {
    const file = join(root, 'progress.json');
    assert.equal((await runEkm([`--config=${source}`, `--export=${file}`])).code, 0);
    const target = newConfig(root, 'progress-target', encryptedDbStore(join(root, 'progress-target')));
    const config = parseConfig(readFileSync(target, 'utf8'), target);
    const capture = (isTTY: boolean) => {
      let text = '';
      const stream = Object.assign(new Writable({ write: (chunk, _e, cb) => {
          text += String(chunk);
          cb();
        } }), { isTTY });
      return { stream, text: () => text };
    };
    const exportTty = { out: capture(true), err: capture(true) };
    const exportedFile = join(root, 'progress-export.json');
    const exportLog = new MemoryLogger();
    assert.equal(await exportKeys(parseConfig(readFileSync(source, 'utf8'), source), exportLog, exportedFile, undefined, { out: exportTty.out.stream, err: exportTty.err.stream }), 0);
    assert.match(exportTty.err.text(), /\r\x1b\[2KExporting keys: 4/);
    assert.match(exportTty.out.text(), /^Exported 4 keys/);
    const tty = { out: capture(true), err: capture(true) };
    const importLog = new MemoryLogger();
    assert.equal(await importKeys(config, importLog, file, undefined, { out: tty.out.stream, err: tty.err.stream }), 0);

    // The audit trail: one export entry per user, one import entry per key, and no key material.
    const entries = (log: MemoryLogger, event: string) => log.entries.filter((e) => e.fields.audit === event).map((e) => e.fields);
    const exported = entries(exportLog, 'private-key.export');
    assert.deepEqual(exported.map((f) => f.email).sort(), ['alice@a.test', 'bob@b.test', 'carol@a.test']);
    assert.equal((exported.find((f) => f.email === 'alice@a.test')?.fingerprints as readonly string[] | undefined)?.length, 2);
    const imported = entries(importLog, 'private-key.import');
    assert.equal(imported.length, 4);
    assert.ok(imported.every((f) => f.change === 'added' && f.status === 200 && f.outcome === 'success'));
    const logged = JSON.stringify([...exportLog.entries, ...importLog.entries]);
    for (const secret of secrets) assert.equal(logged.includes(secret.slice(100, 160)), false);
    assert.match(tty.err.text(), /\r\x1b\[2KImporting 0\/4 \(0%\)/);
    assert.match(tty.out.text(), /^Imported 4 keys/);
    const pipe = { out: capture(false), err: capture(false) };
    assert.equal(await importKeys(config, new MemoryLogger(), file, undefined, { out: pipe.out.stream, err: pipe.err.stream }), 0);
    assert.equal(pipe.err.text(), '');
    assert.match(pipe.out.text(), /^Imported 4 keys in .*: 0 added, 0 updated, 4 unchanged, 0 refused\n$/);
  });

  it('stops on a store outage, says so, and completes when run again', async () => {
    const file = join(root, 'outage.json');
    assert.equal((await runEkm([`--config=${source}`, `--export=${file}`])).code, 0);
    const dir = join(root, 'outage-target');
    const target = newConfig(root, 'outage-target', encryptedDbStore(dir));
    const config = parseConfig(readFileSync(target, 'utf8'), target);
    await (await openStore(config.store, { logger: new MemoryLogger() })).close();
    // Another process holding the write lock, taken as the import starts (its first progress draw).
    const locker = new Database(join(dir, 'db', DB_FILE_NAME));
    let out = '';
    let err = '';
    const io = {
      out: new Writable({ write: (chunk, _e, cb) => {
        out += String(chunk);
        cb();
      } }),
      err: Object.assign(
        new Writable({
          write: (chunk, _e, cb) => {
            if (!locker.inTransaction) locker.prepare('BEGIN EXCLUSIVE').run();
            err += String(chunk);
            cb();
          },
        }),
        { isTTY: true },
      ),
    };
    try {
      assert.equal(await importKeys(config, new MemoryLogger(), file, undefined, io), 1);
    } finally {
      if (locker.inTransaction) locker.prepare('ROLLBACK').run();
      locker.close();
    }
    assert.match(out, /^Import stopped: 4 keys in .*: 0 added, 0 updated, 0 unchanged, 0 refused$/m);
    assert.match(err, /import stopped: Key store is unavailable .*run the import again when the store is back/);
    const again = await runEkm([`--config=${target}`, `--import=${file}`]);
    assert.equal(again.code, 0, again.output);
    assert.deepEqual(await contents(target), await contents(source));
  });

  describe('in the admin-provisioned mode', () => {
    let pki: TestPki;
    let idp: OpenIdProvider;
    let ekm: EkmDaemon;

    before(async () => {
      pki = new TestPki();
      const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
      idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: 'export-test' });
    });

    after(async () => {
      await ekm?.stop();
      await idp?.close();
      pki?.remove();
    });

    it('refuses PUT with 405 while --import provisions keys the daemon then serves', async () => {
      const dir = join(root, 'admin');
      const properties = {
        ...COMMON,
        ...encryptedDbStore(dir),
        'api.keys.provisioning': 'admin',
        'auth.openid.issuer': idp.issuer,
        'auth.openid.jwks': idp.jwksUri,
      };
      mkdirSync(dir, { recursive: true });
      ekm = await EkmDaemon.start({ dir, properties: { ...properties, 'api.workers': '1' }, env: { NODE_EXTRA_CA_CERTS: pki.caCertFile } });
      const ivan = await makePrivateKey('ivan@a.test');
      const token = await idp.mint({ email: 'ivan@a.test', email_verified: true });
      const put = await fetch(`${ekm.baseUrl}/v1/keys/private`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ privateKey: ivan.armored }),
      });
      assert.equal(put.status, 405);
      assert.equal(((await put.json()) as { message: string }).message, 'No key has been generated for ivan@a.test yet. Please ask your administrator.');
      // The refused upload is an audit entry of the attempt.
      const refusal = await waitForLine(() => ekm.output, /"audit":"private-key.write"[^\n]*"status":405|"status":405[^\n]*"audit":"private-key.write"/);
      assert.match(refusal, /"code":"ERR_CLIENT_UPLOAD_DISABLED"/);
      assert.match(refusal, /"email":"ivan@a.test"/);

      const file = join(root, 'provision.json');
      writeFileSync(file, JSON.stringify({ format: 'flowcrypt-ekm-keys', version: 1, keys: [{ email: 'ivan@a.test', privateKey: ivan.armored }] }), { mode: 0o600 });
      const imported = await runEkm([`--config=${ekm.configFile}`, `--import=${file}`]);
      assert.equal(imported.code, 0, imported.output);
      assert.match(imported.output, /1 added/);

      const get = await fetch(`${ekm.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(get.status, 200);
      const body = (await get.json()) as { privateKeys: { decryptedPrivateKey: string }[] };
      assert.equal(body.privateKeys.length, 1);
      const served = await validatePrivateKey(body.privateKeys[0]!.decryptedPrivateKey, 'ivan@a.test');
      assert.equal(served.fingerprint, ivan.fingerprint);
    });
  });
});

/** The first line of `text()` matching `pattern`, waiting up to 5 s for it (log lines are written at the end of an event-loop turn). */
async function waitForLine(text: () => string, pattern: RegExp): Promise<string> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const line = text().split('\n').find((l) => pattern.test(l));
    if (line !== undefined) return line;
    if (Date.now() > deadline) assert.fail(`No line matching ${pattern} in:\n${text()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
