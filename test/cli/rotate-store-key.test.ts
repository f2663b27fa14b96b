import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { EXIT_CONFIG } from '../../src/cli/exit-status.js';
import { ConfigError } from '../../src/errors.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import type { Store, StoredKey } from '../../src/stores/store.js';
import { EkmDaemon, MAIN, runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { TestPki } from '../../testbed/test-pki.js';
import { makeKey } from '../stores/store-conformance.js';

const OLD = 'the old store passphrase 1';
const NEW = 'the new store passphrase 2';
const deps = { logger: new MemoryLogger() };
const COMMON = {
  'org.id': 'rotate.test',
  'org.domains': 'a.test',
  'api.https.enabled': 'false',
  'acl.type': 'SimpleAcl',
  'auth.type': 'OpenIDConnectAuthenticator',
} as const;

/** A database of `users` users with `perUser` keys each; returns the keys by email. */
async function seed(folder: string, users: number, perUser: number): Promise<Map<string, StoredKey[]>> {
  const store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder, encryptionKey: OLD }, deps);
  const byEmail = new Map<string, StoredKey[]>();
  try {
    for (let u = 0; u < users; u++) {
      const email = `user${u}@a.test`;
      const keys = Array.from({ length: perUser }, () => makeKey(email));
      for (const k of keys) await store.upsert(k);
      byEmail.set(email, keys);
    }
  } finally {
    await store.close();
  }
  return byEmail;
}

async function assertEveryKey(store: Store, expected: Map<string, StoredKey[]>): Promise<void> {
  for (const [email, keys] of expected) assert.deepEqual(await store.listByEmail(email), keys, email);
  // The key id index too (its tags are keyed hashes, re-keyed with the records).
  for (const keys of [...expected.values()].slice(0, 20))
    for (const k of keys) assert.deepEqual(await store.listByKeyId(k.fingerprint), [k], `key id ${k.fingerprint}`);
  let n = 0;
  for await (const _ of store.all()) n++;
  assert.equal(n, [...expected.values()].flat().length);
}

/** Every key readable with this passphrase, by email and by walking the store. */
async function readableWith(folder: string, passphrase: string, expected: Map<string, StoredKey[]>): Promise<void> {
  const store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder, encryptionKey: passphrase }, deps);
  try {
    await assertEveryKey(store, expected);
  } finally {
    await store.close();
  }
}

async function refusedWith(folder: string, passphrase: string): Promise<void> {
  await assert.rejects(
    openEncryptedDbStore({ type: 'EncryptedDbStore', folder, encryptionKey: passphrase }, deps),
    (e: unknown) => e instanceof ConfigError && e.message.includes('wrong passphrase'),
  );
}

function configFor(dir: string, extra: Record<string, string> = {}): string {
  return writeProperties(dir, {
    ...COMMON,
    'auth.openid.issuer': 'https://issuer.invalid',
    'auth.openid.audience': 'x',
    'store.type': 'EncryptedDbStore',
    'store.db.folder': join(dir, 'db'),
    'store.db.encryption.key': OLD,
    ...extra,
  });
}

/** Starts the rotation command and SIGKILLs it once its output matches `when`; resolves with what it printed. */
async function killWhen(args: string[], when: RegExp): Promise<string> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = once(child, 'exit');
  const onData = (d: Buffer) => {
    output += d.toString();
    if (when.test(output) && child.exitCode === null) child.kill('SIGKILL');
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const [code, signal] = (await exited) as [number | null, string | null];
  assert.equal(signal, 'SIGKILL', `the command ended before it was killed (${code}):\n${output}`);
  return output;
}

describe('--rotate-store-key on EncryptedDbStore', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'ekm-rotate-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));
  const newPassphraseFile = () => {
    const file = join(root, 'new-passphrase');
    writeFileSync(file, `${NEW}\n`, { mode: 0o600 });
    return file;
  };

  it('re-encrypts every record; a store opened before keeps serving and writing; afterwards only the new passphrase opens it', async () => {
    const folder = join(root, 'inproc', 'db');
    const expected = await seed(folder, 60, 2);
    const running = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder, encryptionKey: OLD }, deps);
    const rotating = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder, encryptionKey: OLD }, deps);
    try {
      const phases: string[] = [];
      const report = await rotating.rotateStoreKey!(NEW, (step) => phases.push(step.phase));
      assert.deepEqual(report, { generation: 1, records: 120, property: 'store.db.encryption.key', walCheckpointed: true });
      assert.deepEqual([phases[0], phases.at(-1)], ['started', 'waiting']);
      // The process opened with the old passphrase learnt the new key from the store.
      await assertEveryKey(running, expected);
      const added = makeKey('user0@a.test');
      assert.equal(await running.upsert(added), 'added');
      expected.get('user0@a.test')!.push(added);
      assert.equal(await running.delete('user1@a.test', expected.get('user1@a.test')![0]!.fingerprint), true);
      expected.get('user1@a.test')!.shift();
      await assertEveryKey(rotating, expected);
    } finally {
      await running.close();
      await rotating.close();
    }
    await refusedWith(folder, OLD);
    await readableWith(folder, NEW, expected);
    // Nothing of the old generation is left in the files.
    const files = ['ekm.sqlite', 'ekm.sqlite-wal'].map((f) => {
      try {
        return readFileSync(join(folder, f));
      } catch {
        return Buffer.alloc(0);
      }
    });
    assert.ok(
      files.every((b) => !b.includes('currentByNext') && !b.includes('byCurrent')),
      'the rotation-time keyring is gone',
    );
  });

  it('killed with SIGKILL at several points leaves every key readable with either passphrase; run again, it finishes', async () => {
    // Each database is killed at its points in turn: a new rotation's first run waits out the
    // grace period once every record is moved, which a resumed run (started later) does not.
    const scenarios = [
      { name: 'killed-in-records', users: 1000, points: [/Rotation started/, /Re-encrypted 400 of 2000 records/, /Re-encrypted 1400 of 2000 records/] },
      { name: 'killed-waiting', users: 100, points: [/Waiting \d+ s/] },
    ];
    for (const scenario of scenarios) {
      const dir = join(root, scenario.name);
      mkdirSync(dir, { recursive: true });
      const config = configFor(dir);
      const folder = join(dir, 'db');
      const expected = await seed(folder, scenario.users, 2);
      const args = [`--config=${config}`, '--rotate-store-key', `--new-passphrase-file=${newPassphraseFile()}`];
      for (const [i, point] of scenario.points.entries()) {
        const output = await killWhen(args, point);
        if (i > 0) assert.match(output, /Rotation resumed: key generation 1, \d+ of \d+ records re-encrypted already/, 'a second run resumes the first one');
        await readableWith(folder, OLD, expected);
        await readableWith(folder, NEW, expected);
      }
      const none = await runEkm([`--config=${config}`, '--rotate-store-key']);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /rotation not started: EncryptedDbStore needs the new passphrase: --new-passphrase-file=<file>/);
      const same = join(root, 'same-passphrase');
      writeFileSync(same, `${OLD}\n`);
      const unchanged = await runEkm([`--config=${config}`, '--rotate-store-key', `--new-passphrase-file=${same}`]);
      assert.equal(unchanged.code, 1);
      assert.match(unchanged.stderr, /the new passphrase is the one store\.db\.encryption\.key holds now/);
      const other = join(root, 'other-passphrase');
      writeFileSync(other, 'yet another passphrase 3\n');
      const refused = await runEkm([`--config=${config}`, '--rotate-store-key', `--new-passphrase-file=${other}`]);
      assert.equal(refused.code, EXIT_CONFIG, 'an operator mistake, told in one line');
      assert.match(refused.stderr, /A rotation to another new passphrase is under way: run --rotate-store-key again with the same --new-passphrase-file/);
      const finished = await runEkm(args);
      assert.equal(finished.code, 0, finished.output);
      assert.match(finished.stdout, /Rotated the store key of EncryptedDbStore: \d+ records re-encrypted by this run, now under key generation 1\./);
      assert.match(
        finished.stdout,
        new RegExp(`set store\\.db\\.encryption\\.key in ${config.replace(/[.]/g, '\\.')} \\(on every host\\) to the new value before the next restart`),
      );
      assert.match(finished.output, /"audit":"store-key.rotate".*"status":200/);
      assert.equal(finished.output.includes(NEW), false, 'the new passphrase is never printed');
      await refusedWith(folder, OLD);
      await readableWith(folder, NEW, expected);
      const listed = await runEkm([`--config=${config}`, '--list']);
      assert.equal(listed.code, EXIT_CONFIG, 'the config still names the old passphrase, which opens nothing now');
      assert.match(listed.stderr, /wrong passphrase/);
    }
  });

  it('online: the running daemon serves every key during the rotation and after it, without a restart, and takes new keys', async () => {
    const dir = join(root, 'online');
    mkdirSync(dir, { recursive: true });
    const pki = new TestPki();
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    const idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: 'rotate' });
    const expected = await seed(join(dir, 'db'), 1500, 2);
    const properties = {
      ...COMMON,
      'api.workers': '2',
      'auth.openid.issuer': idp.issuer,
      'auth.openid.jwks': idp.jwksUri,
      'auth.openid.audience': 'rotate',
      'store.type': 'EncryptedDbStore',
      'store.db.folder': join(dir, 'db'),
      'store.db.encryption.key': OLD,
    };
    let ekm = await EkmDaemon.start({ dir, env: { NODE_EXTRA_CA_CERTS: pki.caCertFile }, properties });
    try {
      const users = ['user0@a.test', 'user700@a.test', 'user1499@a.test'];
      const tokens = new Map(await Promise.all(users.map(async (u) => [u, await idp.mint({ email: u, email_verified: true })] as const)));
      const get = (email: string) => request(`${ekm.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${tokens.get(email)!}` } });
      const workers = ekm.workerPids();
      let rotating = true;
      const failures: string[] = [];
      let served = 0;
      const load = (async () => {
        while (rotating) {
          for (const email of users) {
            const answer = await get(email);
            const got = answer.status === 200 ? (answer.json.privateKeys as { decryptedPrivateKey: string }[]).map((k) => k.decryptedPrivateKey) : [];
            if (answer.status !== 200 || JSON.stringify(got) !== JSON.stringify(expected.get(email)!.map((k) => k.privateKey)))
              failures.push(`${email}: ${answer.status} ${answer.text.slice(0, 200)}`);
            served++;
          }
        }
      })();
      const rotation = await runEkm([`--config=${ekm.configFile}`, '--rotate-store-key', `--new-passphrase-file=${newPassphraseFile()}`]);
      rotating = false;
      await load;
      assert.equal(rotation.code, 0, rotation.output);
      assert.deepEqual(failures, [], `${failures.length} of ${served} answers wrong during the rotation`);
      assert.ok(served > 30, `only ${served} requests during the rotation`);
      // After it, without a restart: reads, and a new key through PUT.
      assert.deepEqual(ekm.workerPids().sort(), workers.sort(), 'no worker was replaced');
      for (const email of users) assert.equal((await get(email)).json.privateKeys.length, 2);
      const fresh = await makePrivateKey('user0@a.test');
      const put = await request(`${ekm.baseUrl}/v1/keys/private`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${tokens.get('user0@a.test')!}`, 'content-type': 'application/json' },
        body: JSON.stringify({ privateKey: fresh.armored }),
      });
      assert.equal(put.status, 200, put.text);
      assert.equal((await get('user0@a.test')).json.privateKeys.length, 3);
      // The next restart needs the new passphrase, as the command said.
      await ekm.stop();
      ekm = await EkmDaemon.start({ dir, env: { NODE_EXTRA_CA_CERTS: pki.caCertFile }, properties: { ...properties, 'store.db.encryption.key': NEW } });
      assert.equal((await get('user0@a.test')).json.privateKeys.length, 3);
      assert.equal((await get('user1499@a.test')).json.privateKeys.length, 2);
    } finally {
      await ekm.stop('SIGKILL');
      await idp.close();
      pki.remove();
    }
  });
});
