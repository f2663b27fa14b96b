import assert from 'node:assert/strict';
import { createCipheriv, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { EncryptedDbStoreConfig } from '../../src/config/config.js';
import { ConfigError, KeyIdIndexBuildingError, StoreUnavailableError } from '../../src/errors.js';
import { DB_FILE_NAME, openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { downgradeToSchema1 } from './previous-schema.js';
import { makeKey, makeRealKey, runStoreConformance } from './store-conformance.js';

const deps = { logger: new MemoryLogger() };
const freshConfig = (): EncryptedDbStoreConfig => ({
  type: 'EncryptedDbStore',
  folder: join(mkdtempSync(join(tmpdir(), 'ekm-db-')), 'data'),
  encryptionKey: 'correct horse battery staple',
});

runStoreConformance('EncryptedDbStore', async () => {
  const config = freshConfig();
  return { store: await openEncryptedDbStore(config, deps), cleanup: async () => rmSync(join(config.folder, '..'), { recursive: true }) };
});

describe('EncryptedDbStore key id index migration', () => {
  const downgrade = (config: EncryptedDbStoreConfig) => downgradeToSchema1(config.folder);

  it('indexes the keys of a previous version at open by an operator command', async () => {
    const config = freshConfig();
    const real = await makeRealKey('migrated@example.com');
    const first = await openEncryptedDbStore(config, deps);
    await first.upsert(real.key);
    await first.close();
    downgrade(config);
    const store = await openEncryptedDbStore(config, { ...deps, setup: true });
    assert.deepEqual(await store.listByKeyId(real.subkeyLongId), [real.key]);
    assert.deepEqual(await store.listByEmail(real.key.email), [real.key]);
    await store.close();
  });

  it('indexes them in the background when serving, answering 503 (never an empty list) until done', async () => {
    const config = freshConfig();
    const keys = await Promise.all(Array.from({ length: 120 }, (_, i) => makeRealKey(`bulk${i}@example.com`)));
    const first = await openEncryptedDbStore(config, deps);
    for (const k of keys) await first.upsert(k.key);
    await first.close();
    downgrade(config);
    const store = await openEncryptedDbStore(config, deps);
    const last = keys[keys.length - 1]!;
    await assert.rejects(store.listByKeyId(last.key.fingerprint), KeyIdIndexBuildingError);
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        assert.deepEqual(await store.listByKeyId(last.primaryLongId), [last.key]);
        break;
      } catch (e) {
        if (!(e instanceof KeyIdIndexBuildingError) || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.deepEqual(await store.listByKeyId(keys[0]!.subkeyFingerprint), [keys[0]!.key]);
    await store.close();
  });

  it('catches up with a key that a previous version wrote after the migration (a rollback)', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, { ...deps, setup: true });
    const real = await makeRealKey('rollback@example.com');
    await store.upsert(real.key);
    // What the previous version's upsert does: rewrite the row, knowing nothing of the index.
    const raw = new Database(join(config.folder, DB_FILE_NAME));
    raw.prepare('UPDATE keys SET record = record').run();
    raw.close();
    await assert.rejects(store.listByKeyId(real.key.fingerprint), KeyIdIndexBuildingError);
    await store.close();
    const reopened = await openEncryptedDbStore(config, { ...deps, setup: true });
    assert.deepEqual(await reopened.listByKeyId(real.subkeyLongId), [real.key]);
    await reopened.close();
  });
});

describe('EncryptedDbStore encryption', () => {
  it('keeps no email, fingerprint or key material on disk in plaintext', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    const key = makeKey('plaintext.check@example.com');
    await store.upsert(key);
    await store.close();
    const onDisk = readdirSync(config.folder).map((f) => readFileSync(join(config.folder, f)).toString('latin1')).join('');
    assert.ok(onDisk.length > 4096);
    for (const secret of [key.email, 'plaintext.check', key.fingerprint, key.privateKey.slice(60, 120), key.publicKey.slice(60, 120)]) {
      assert.equal(onDisk.includes(secret), false, `found ${secret.slice(0, 20)} on disk`);
    }
  });

  it('refuses a wrong passphrase at open without changing the file', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    await store.upsert(makeKey('wrong.pass@example.com'));
    await store.close();
    const file = join(config.folder, DB_FILE_NAME);
    const before = readFileSync(file);
    await assert.rejects(openEncryptedDbStore({ ...config, encryptionKey: 'wrong' }, deps), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /wrong passphrase/);
      assert.equal(e.message.includes('wrong'), true);
      assert.equal(e.message.includes(config.encryptionKey), false);
      return true;
    });
    assert.deepEqual(readFileSync(file), before);
    const again = await openEncryptedDbStore(config, deps);
    assert.equal((await again.listByEmail('wrong.pass@example.com')).length, 1);
    await again.close();
  });

  it('refuses a tampered record with a 503, never a shorter list', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    await store.upsert(makeKey('tamper@example.com'));
    await store.upsert(makeKey('tamper@example.com'));
    const raw = new Database(join(config.folder, DB_FILE_NAME));
    const row = raw.prepare('SELECT id, record FROM keys ORDER BY id LIMIT 1').get() as { id: number; record: Buffer };
    row.record[10] = row.record[10]! ^ 1;
    raw.prepare('UPDATE keys SET record = ? WHERE id = ?').run(row.record, row.id);
    raw.close();
    await assert.rejects(store.listByEmail('tamper@example.com'), StoreUnavailableError);
    await store.close();
  });

  it('refuses a record that decrypts to something other than a record, without quoting it', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    await store.upsert(makeKey('garbled@example.com'));
    // Re-seal the row, with the store's own key and AAD, over text that is not JSON.
    const raw = new Database(join(config.folder, DB_FILE_NAME));
    const kdf = JSON.parse((raw.prepare("SELECT value FROM meta WHERE name = 'kdf'").get() as { value: Buffer }).value.toString()) as { N: number; r: number; p: number; maxmem: number; salt: string };
    const master = scryptSync(config.encryptionKey, Buffer.from(kdf.salt, 'base64'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: kdf.maxmem });
    const key = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'ekm record encryption', 32));
    const row = raw.prepare('SELECT id, owner, fp FROM keys').get() as { id: number; owner: Buffer; fp: Buffer };
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.concat([Buffer.from('ekm-key-v1'), row.owner, row.fp]));
    const sealed = Buffer.concat([cipher.update('secret-plaintext-not-json'), cipher.final(), cipher.getAuthTag()]);
    raw.prepare('UPDATE keys SET iv = ?, record = ? WHERE id = ?').run(iv, sealed, row.id);
    raw.close();
    await assert.rejects(store.listByEmail('garbled@example.com'), (e: unknown) => {
      assert.ok(e instanceof StoreUnavailableError);
      assert.match(e.message + e.details, /integrity check/);
      assert.doesNotMatch(`${e.message} ${e.details} ${String(e.cause)}`, /secret-plaintext/);
      return true;
    });
    await store.close();
  });

  it('refuses a record moved to another owner (AAD binds owner and fingerprint)', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    await store.upsert(makeKey('victim@example.com'));
    await store.upsert(makeKey('thief@example.com'));
    const raw = new Database(join(config.folder, DB_FILE_NAME));
    const rows = raw.prepare('SELECT id, iv, record FROM keys ORDER BY id').all() as { id: number; iv: Buffer; record: Buffer }[];
    raw.prepare('UPDATE keys SET iv = ?, record = ? WHERE id = ?').run(rows[0]!.iv, rows[0]!.record, rows[1]!.id);
    raw.close();
    await assert.rejects(store.listByEmail('thief@example.com'), StoreUnavailableError);
    await store.close();
  });

  it('never serves a key another process deleted or replaced, though it keeps recent reads', async () => {
    const config = freshConfig();
    // Two connections to one file, as two workers (or a worker and --import) have.
    const reader = await openEncryptedDbStore(config, deps);
    const writer = await openEncryptedDbStore(config, deps);
    const first = makeKey('recent@example.com');
    await writer.upsert(first);
    assert.deepEqual(await reader.listByEmail('recent@example.com'), [first]);
    assert.deepEqual(await reader.listByEmail('recent@example.com'), [first], 'read again, now from memory');
    const replaced = { ...first, privateKey: makeKey('recent@example.com').privateKey };
    assert.equal(await writer.upsert(replaced), 'updated');
    assert.deepEqual(await reader.listByEmail('recent@example.com'), [replaced], 'an update by another connection is seen at once');
    assert.equal(await writer.delete('recent@example.com', first.fingerprint), true);
    assert.deepEqual(await reader.listByEmail('recent@example.com'), [], 'a delete by another connection is seen at once');
    // A commit by a plain SQLite connection (no EKM code at all) is seen too.
    await writer.upsert(first);
    assert.equal((await reader.listByEmail('recent@example.com')).length, 1);
    const raw = new Database(join(config.folder, DB_FILE_NAME));
    raw.prepare('DELETE FROM keys').run();
    raw.close();
    assert.deepEqual(await reader.listByEmail('recent@example.com'), []);
    // The reader's own writes too.
    const own = makeKey('recent@example.com');
    await reader.upsert(own);
    assert.deepEqual(await reader.listByEmail('recent@example.com'), [own]);
    await reader.delete('recent@example.com', own.fingerprint);
    assert.deepEqual(await reader.listByEmail('recent@example.com'), []);
    await writer.close();
    await reader.close();
  });

  it('hands out lists a caller cannot use to change what later callers get', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    const key = makeKey('frozen@example.com');
    await store.upsert(key);
    const list = await store.listByEmail('frozen@example.com');
    list.pop();
    const [stored] = await store.listByEmail('frozen@example.com');
    assert.throws(() => Object.assign(stored!, { privateKey: 'x' }), TypeError);
    assert.deepEqual(await store.listByEmail('frozen@example.com'), [key]);
    await store.close();
  });

  it('answers a write with 503 after the busy timeout while another connection holds the write lock', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    const locker = new Database(join(config.folder, DB_FILE_NAME));
    locker.exec('BEGIN IMMEDIATE');
    const started = Date.now();
    await assert.rejects(store.upsert(makeKey('locked@example.com')), StoreUnavailableError);
    assert.ok(Date.now() - started < 10_000);
    // WAL: readers are not blocked by a writer.
    assert.deepEqual(await store.listByEmail('locked@example.com'), []);
    locker.exec('ROLLBACK');
    locker.close();
    assert.equal(await store.upsert(makeKey('locked@example.com')), 'added');
    await store.close();
  });

  it('fails the probe when the key-check record is damaged', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    await store.probe();
    const raw = new Database(join(config.folder, DB_FILE_NAME));
    const check = (raw.prepare("SELECT value FROM meta WHERE name = 'check'").get() as { value: Buffer }).value;
    raw.prepare("UPDATE meta SET value = ? WHERE name = 'check'").run(Buffer.concat([check.subarray(0, 20), Buffer.from([check[20]! ^ 0xff]), check.subarray(21)]));
    await assert.rejects(store.probe(), StoreUnavailableError);
    raw.prepare("UPDATE meta SET value = ? WHERE name = 'check'").run(check);
    raw.close();
    await store.probe();
    await store.close();
  });

  it('refuses a file that is not an EKM database', async () => {
    const config = freshConfig();
    const store = await openEncryptedDbStore(config, deps);
    await store.close();
    const raw = new Database(join(config.folder, DB_FILE_NAME));
    raw.exec("DELETE FROM meta WHERE name = 'kdf'");
    raw.close();
    await assert.rejects(openEncryptedDbStore(config, deps), /not an EKM database/);
  });
});
