import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { DB_FILE_NAME } from '../../src/stores/encrypted-db-store.js';
import { EkmDaemon } from '../../testbed/ekm-daemon.js';
import { request, type Answer } from '../../testbed/http-client.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { isAlive } from '../../testbed/processes.js';
import { LoopExt4, SmallTmpfs, mountUnsupportedReason } from '../support/test-filesystems.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

const PASSPHRASE = 'unwritable store passphrase 5e1b';

interface User {
  readonly email: string;
  readonly armored: string;
  readonly token: string;
}

/** Polls until `check` resolves true, or fails with `what` after `timeoutMs`. */
async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting until ${what}`);
}

/** A write refused because the store cannot be written: the error contract, the stable code, the cause. */
function assertWriteRefused(answer: Answer, code: 'ERR_STORE_READ_ONLY' | 'ERR_STORE_FULL', cause: RegExp): void {
  assert.equal(answer.status, 503, answer.text);
  assert.equal(answer.json?.code, 503, answer.text);
  assert.match(answer.json.message, code === 'ERR_STORE_FULL' ? /^Key store is full/ : /^Key store is read-only/);
  assert.match(answer.json.details, cause);
}

const skip = mountUnsupportedReason();

describe('a key store that cannot be written: the real daemon (2 workers) on real filesystems', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  const users: User[] = [];
  const cleanups: (() => void | Promise<void>)[] = [];
  const alice = () => users[0]!;
  const bob = () => users[1]!;
  const carol = () => users[2]!;
  const dave = () => users[3]!;

  before(async () => {
    pki = new TestPki();
    const cert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: cert.keyPem, cert: cert.certPem }, audience: 'unwritable' });
    for (const name of ['alice', 'bob', 'carol', 'dave']) {
      const email = `${name}@unwritable.example`;
      users.push({ email, armored: (await makePrivateKey(email)).armored, token: await idp.mint({ email, email_verified: true }) });
    }
  });
  // Daemons first, then mounts: a filesystem unmounts only once nothing holds its files.
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await idp?.close();
    pki?.remove();
  });

  const start = async (folder: string) => {
    const ekm = await EkmDaemon.start({
      env: { NODE_EXTRA_CA_CERTS: pki.caCertFile },
      properties: {
        ...baseProperties({ orgId: 'unwritable.org', idp, audience: 'unwritable' }),
        ...encryptedDbProperties(folder, PASSPHRASE),
        'api.workers': '2',
        'logger.default.level': 'info',
      },
    });
    cleanups.push(async () => {
      await ekm.stop('SIGKILL');
    });
    return ekm;
  };
  const ext4 = () => {
    const fs = LoopExt4.create();
    cleanups.push(() => fs.remove());
    return fs;
  };
  const put = (ekm: EkmDaemon, user: User) =>
    request(`${ekm.baseUrl}/v1/keys/private`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ privateKey: user.armored }),
    });
  const putOk = async (ekm: EkmDaemon, user: User) => {
    const answer = await put(ekm, user);
    assert.equal(answer.status, 200, answer.text);
  };
  /** The user's own key comes back, through the private and the public route. */
  const assertReads = async (ekm: EkmDaemon, user: User) => {
    const own = await request(`${ekm.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${user.token}` } });
    assert.equal(own.status, 200, own.text);
    assert.deepEqual(
      own.json.privateKeys.map((k: { decryptedPrivateKey: string }) => k.decryptedPrivateKey.trim()),
      [user.armored.trim()],
    );
    const pub = await request(`${ekm.baseUrl}/v1/keys/public/${user.email}`);
    assert.equal(pub.status, 200, pub.text);
    assert.equal(pub.json.publicKeys.length, 1);
  };
  const health = (ekm: EkmDaemon) => request(`${ekm.baseUrl}/health`);
  const assertHealthWritesFailing = async (ekm: EkmDaemon, code: string, cause: RegExp) => {
    const answer = await health(ekm);
    assert.equal(answer.status, 200, answer.text);
    assert.equal(answer.json.storeStatus, 'up');
    assert.equal(answer.json.storeWrites, 'failing');
    assert.equal(answer.json.storeWritesCode, code);
    assert.match(answer.json.storeWritesDetails, cause);
  };
  /** What an operator reads at start names the cause, never a misdiagnosis or a stack trace. */
  const assertStartLog = (ekm: EkmDaemon, cause: RegExp) => {
    assert.match(ekm.output, cause);
    assert.doesNotMatch(ekm.output, /not an EKM database|unexpected error|\n\s+at /);
  };

  it('keeps serving reads when the filesystem turns read-only under it, through worker replacements and a fresh start', { skip }, async () => {
    const fs = ext4();
    const folder = join(fs.mountPoint, 'data');
    const ekm = await start(folder);
    await putOk(ekm, alice());
    await putOk(ekm, bob());

    fs.failIntoReadOnly();
    assert.throws(() => writeFileSync(join(fs.mountPoint, 'probe'), 'x'), { code: 'EROFS' });
    await assertReads(ekm, alice());
    await assertReads(ekm, bob());
    assertWriteRefused(await put(ekm, carol()), 'ERR_STORE_READ_ONLY', /read-only filesystem \(EROFS\)/);
    assert.equal((await put(ekm, carol())).json.code, 503);
    await assertHealthWritesFailing(ekm, 'ERR_STORE_READ_ONLY', /EROFS/);

    // Replace each worker in turn: each replacement starts on the read-only filesystem and serves.
    for (const [i, victim] of ekm.workerPids().entries()) {
      const others = ekm.workerPids().filter((pid) => pid !== victim);
      process.kill(victim, 'SIGKILL');
      await waitFor('a replacement worker serves', () => (ekm.output.match(/Replacement worker ready/g) ?? []).length === i + 1);
      for (let i = 0; i < 10; i++) await assertReads(ekm, alice());
      for (const pid of others) assert.ok(isAlive(pid), 'a serving worker was killed');
    }
    assert.ok(isAlive(ekm.process.pid!));
    assert.doesNotMatch(ekm.output, /failed at start|keep failing/);
    assertWriteRefused(await put(ekm, carol()), 'ERR_STORE_READ_ONLY', /EROFS/);
    await ekm.stop();

    // A fresh start on the still read-only filesystem, with the -wal the last writes went to.
    const wal = join(folder, `${DB_FILE_NAME}-wal`);
    assert.ok(existsSync(wal) && statSync(wal).size > 0, 'the -wal holds the last writes');
    const again = await start(folder);
    await assertReads(again, alice());
    await assertReads(again, bob());
    assertWriteRefused(await put(again, carol()), 'ERR_STORE_READ_ONLY', /EROFS/);
    await assertHealthWritesFailing(again, 'ERR_STORE_READ_ONLY', /EROFS/);
    assertStartLog(again, /read-only.*EROFS/);
  });

  it('starts on a read-only mount after a crash (a -wal left over), serves reads, and takes writes once it is writable, without a restart', { skip }, async () => {
    const fs = ext4();
    const folder = join(fs.mountPoint, 'data');
    const first = await start(folder);
    await putOk(first, alice());
    await putOk(first, bob());
    const pids = [first.process.pid!, ...first.workerPids()];
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await first.stop();
    // The filesystem remounts read-only only once no process holds a file open for writing.
    await waitFor('the killed workers are gone', () => !pids.some(isAlive));
    assert.ok(statSync(join(folder, `${DB_FILE_NAME}-wal`)).size > 0, 'the crash left a -wal behind');

    fs.remountReadOnly();
    const ekm = await start(folder);
    await assertReads(ekm, alice());
    await assertReads(ekm, bob());
    assertWriteRefused(await put(ekm, carol()), 'ERR_STORE_READ_ONLY', /EROFS/);
    await assertHealthWritesFailing(ekm, 'ERR_STORE_READ_ONLY', /EROFS/);
    assertStartLog(ekm, /read-only.*EROFS/);

    fs.remountReadWrite();
    // Every worker takes writes again (each PUT lands on one of them), and /health says so.
    await waitFor('writes come back', async () => (await put(ekm, carol())).status === 200);
    await new Promise((r) => setTimeout(r, 1000)); // the other worker's next writer retry
    for (let i = 0; i < 6; i++) await putOk(ekm, dave());
    await assertReads(ekm, carol());
    await waitFor('/health reports writes up', async () => (await health(ekm)).json?.storeWrites === 'up');
    assert.ok(isAlive(ekm.process.pid!));
  });

  it('starts on a read-only mount after a clean stop, and answers 503 (not "not an EKM database") for a database SQLite cannot read there', { skip }, async () => {
    const fs = ext4();
    const folder = join(fs.mountPoint, 'data');
    const first = await start(folder);
    await putOk(first, alice());
    await first.stop();
    assert.equal(statSync(join(folder, DB_FILE_NAME + '-wal')).size, 0, 'a clean stop checkpoints everything into the database file');

    fs.remountReadOnly();
    const ekm = await start(folder);
    await assertReads(ekm, alice());
    assertWriteRefused(await put(ekm, bob()), 'ERR_STORE_READ_ONLY', /EROFS/);
    await ekm.stop();

    // An older version's clean stop deleted the -wal and -shm; SQLite cannot read a WAL database
    // on a read-only filesystem without them. The service says why and recovers once writable.
    fs.remountReadWrite();
    const db = new Database(join(folder, DB_FILE_NAME));
    db.prepare('SELECT count(*) FROM keys').get();
    db.close();
    assert.ok(!existsSync(join(folder, `${DB_FILE_NAME}-shm`)));
    fs.remountReadOnly();
    const legacy = await start(folder);
    const refused = await request(`${legacy.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${alice().token}` } });
    assert.equal(refused.status, 503, refused.text);
    assert.match(refused.json.details, /EROFS.*-shm/);
    assert.equal((await health(legacy)).status, 503);
    assertStartLog(legacy, /read-only filesystem \(EROFS\).*-shm/);
    fs.remountReadWrite();
    await waitFor('reads come back', async () => (await request(`${legacy.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${alice().token}` } })).status === 200);
    await assertReads(legacy, alice());
    await waitFor('writes come back', async () => (await put(legacy, bob())).status === 200);
  });

  it('answers 503 "full" to writes on a full disk, keeps serving reads, and takes writes again once there is room', { skip }, async () => {
    const tmpfs = SmallTmpfs.create();
    cleanups.push(() => tmpfs.remove());
    const ekm = await start(join(tmpfs.mountPoint, 'data'));
    await putOk(ekm, alice());

    tmpfs.fill();
    assertWriteRefused(await put(ekm, bob()), 'ERR_STORE_FULL', /No space left.*(SQLITE_FULL|ENOSPC)/);
    await assertReads(ekm, alice());
    await assertHealthWritesFailing(ekm, 'ERR_STORE_FULL', /No space left/);
    // A worker replaced while the disk is full starts, and serves reads.
    process.kill(ekm.workerPids()[0]!, 'SIGKILL');
    await waitFor('a replacement worker serves', () => ekm.output.includes('Replacement worker ready'));
    for (let i = 0; i < 6; i++) await assertReads(ekm, alice());
    assert.doesNotMatch(ekm.output, /failed at start/);

    tmpfs.free();
    // Both workers take writes again, within a second (a worker retries a failed writer at most
    // once per second): the one whose write failed and the one started on the full disk.
    await waitFor('writes come back', async () => (await put(ekm, bob())).status === 200);
    await new Promise((r) => setTimeout(r, 1000));
    for (let i = 0; i < 6; i++) await putOk(ekm, bob());
    await assertReads(ekm, bob());
    await waitFor('/health reports writes up', async () => (await health(ekm)).json?.storeWrites === 'up');
  });

  it('keeps the serving worker and retries when replacements fail at start (here: store.db.folder became a file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-replacements-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const ekm = await start(join(dir, 'data'));
    // The serving worker keeps its open database; from now on every replacement fails to open one.
    renameSync(join(dir, 'data'), join(dir, 'moved'));
    writeFileSync(join(dir, 'data'), 'not a folder');
    const [victim, survivor] = ekm.workerPids();
    process.kill(victim!, 'SIGKILL');
    await waitFor('three replacements failed', () => (ekm.output.match(/Worker failed at start/g) ?? []).length >= 3);
    assert.match(ekm.output, /Replacement workers keep failing at start; the 1 serving go on: .*store\.db\.folder/);
    assert.doesNotMatch(ekm.output, /stopping the service/);
    assert.ok(isAlive(survivor!) && isAlive(ekm.process.pid!));
    assert.equal((await health(ekm)).status, 200);
  });
});
