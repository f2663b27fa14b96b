import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { inspect } from 'node:util';
import type { EncryptedDbStoreConfig } from '../../src/config/config.js';
import { KeyIdIndexBuildingError, StoreReadOnlyError, StoreUnavailableError } from '../../src/errors.js';
import { DB_FILE_NAME, openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import { runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { LoopExt4, mountUnsupportedReason } from '../support/test-filesystems.js';
import { downgradeToSchema1 } from './previous-schema.js';
import { makeKey, makeRealKey } from './store-conformance.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

const deps = { logger: new MemoryLogger() };
const config = (folder: string): EncryptedDbStoreConfig => ({ type: 'EncryptedDbStore', folder, encryptionKey: 'unwritable store test' });
const storeCheckProperties = (folder: string) => ({ ...baseProperties({ orgId: 'unwritable.org' }), ...encryptedDbProperties(folder, config(folder).encryptionKey) });
const chattr = (flag: '+i' | '-i', ...files: string[]) => execFileSync('chattr', [flag, ...files]);
const dbFiles = (folder: string) => [DB_FILE_NAME, `${DB_FILE_NAME}-wal`, `${DB_FILE_NAME}-shm`].map((f) => join(folder, f));
/** A key id lookup's refusal while the index cannot be written: a 503 naming the cause, never a list. */
const indexNotWritable = (cause: RegExp) => (e: unknown) => {
  assert.ok(e instanceof StoreUnavailableError, String(e));
  assert.match(e.details, /^The key id index is incomplete and cannot be completed while the store cannot be written: /);
  assert.match(e.details, cause);
  return true;
};
/** Polls `lookup` until it settles as `check` wants (a 503 while the indexer works), or 15 s pass. */
async function eventually<T>(lookup: () => Promise<T>, check: (outcome: { value?: T; error?: unknown }) => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const outcome: { value?: T; error?: unknown } = await lookup().then((value) => ({ value }), (error: unknown) => ({ error }));
    if (check(outcome)) return;
    if (Date.now() > deadline) assert.fail(`no settled answer in 15 s: ${outcome.error === undefined ? JSON.stringify(outcome.value) : inspect(outcome.error)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const indexWarnings = (logger: MemoryLogger) => logger.entries.filter((e) => e.message.startsWith('Indexing key ids failed'));

describe('EncryptedDbStore on files it may not write', { skip: mountUnsupportedReason() }, () => {
  const cleanups: (() => void)[] = [];
  after(() => {
    for (const cleanup of cleanups.reverse()) cleanup();
  });

  it('opens a database whose files are immutable (EPERM) read-only, says why on write, and writes again once they are not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-db-immutable-'));
    const files = [DB_FILE_NAME, `${DB_FILE_NAME}-wal`, `${DB_FILE_NAME}-shm`].map((f) => join(dir, f));
    cleanups.push(() => {
      chattr('-i', ...files);
      rmSync(dir, { recursive: true, force: true });
    });
    const key = makeKey('immutable@example.com');
    const first = await openEncryptedDbStore(config(dir), deps);
    await first.upsert(key);
    await first.close();

    chattr('+i', ...files);
    const store = await openEncryptedDbStore(config(dir), deps);
    try {
      assert.deepEqual(await store.listByEmail(key.email), [key]);
      await assert.rejects(store.upsert(makeKey('other@example.com')), (e: unknown) => {
        assert.ok(e instanceof StoreReadOnlyError);
        assert.equal(e.code, 'ERR_STORE_READ_ONLY');
        assert.match(e.details, /may not write .*ekm\.sqlite.* \(EPERM\)/);
        return true;
      });
      await assert.rejects(store.probeWrites!(), StoreReadOnlyError);
      const check = await runEkm([`--config=${writeProperties(dir, storeCheckProperties(dir))}`, '--test-store-connection']);
      assert.equal(check.code, 1, check.output);
      assert.match(check.output, /round trip latency[\s\S]*failure: Key store is read-only: keys can be read but not changed \(The service may not write .*ekm\.sqlite \(EPERM\)\)/);

      chattr('-i', ...files);
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal(await store.upsert(makeKey('other@example.com')), 'added');
      assert.equal(await store.probeWrites!(), 'up');
    } finally {
      await store.close();
    }
  });

  it('serves a previous version\'s database with immutable files: reads go on, key id lookups answer 503 naming the cause, and the index is built once writes work', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-db-immutable-index-'));
    cleanups.push(() => {
      chattr('-i', ...dbFiles(dir));
      rmSync(dir, { recursive: true, force: true });
    });
    const real = await makeRealKey('immutable.index@example.com');
    const first = await openEncryptedDbStore(config(dir), deps);
    await first.upsert(real.key);
    await first.close();
    downgradeToSchema1(dir);

    chattr('+i', ...dbFiles(dir));
    const logger = new MemoryLogger();
    const store = await openEncryptedDbStore(config(dir), { logger });
    try {
      // Twice, the second time past the writer's retry interval: still refused, reads unaffected.
      for (const wait of [0, 1100]) {
        await new Promise((r) => setTimeout(r, wait));
        await assert.rejects(store.listByKeyId(real.subkeyLongId), indexNotWritable(/\(EPERM\)/));
        assert.deepEqual(await store.listByEmail(real.key.email), [real.key]);
      }
      // Read-only is said by /health and every write: the indexer's stop is no warning of its own.
      assert.deepEqual(indexWarnings(logger), []);

      chattr('-i', ...dbFiles(dir));
      await new Promise((r) => setTimeout(r, 1100));
      // Lookups alone bring the writer back, migrate the database and build the index.
      await eventually(() => store.listByKeyId(real.subkeyLongId), ({ value, error }) => {
        if (!(error instanceof StoreUnavailableError || error instanceof KeyIdIndexBuildingError)) assert.ifError(error);
        return value !== undefined;
      });
      assert.deepEqual(await store.listByKeyId(real.subkeyLongId), [real.key]);
      assert.deepEqual(await store.listByKeyId(real.key.fingerprint.toUpperCase()), [real.key]);
    } finally {
      await store.close();
    }
  });

  it('keeps serving reads when the filesystem turns read-only while the key id index is being built', async () => {
    const fs = LoopExt4.create(32);
    cleanups.push(() => fs.remove());
    const dir = join(fs.mountPoint, 'data');
    const keys = Array.from({ length: 160 }, (_, i) => makeKey(`indexing${i}@example.com`));
    const first = await openEncryptedDbStore(config(dir), deps);
    for (const key of keys) await first.upsert(key);
    await first.close();
    downgradeToSchema1(dir);

    const logger = new MemoryLogger();
    const store = await openEncryptedDbStore(config(dir), { logger });
    try {
      // The indexer has written at most its first batch of 50 (it pauses between batches).
      fs.failIntoReadOnly();
      const last = keys[keys.length - 1]!;
      // "Still being built" until the indexer's next write fails; then the cause, never a list.
      await eventually(() => store.listByKeyId(last.fingerprint), ({ value, error }) => {
        assert.equal(value, undefined, 'a key id lookup answered before the index was complete');
        if (error instanceof KeyIdIndexBuildingError) return false;
        assert.ok(error instanceof StoreUnavailableError, String(error));
        return error.details.includes('cannot be written');
      });
      await assert.rejects(store.listByKeyId(last.fingerprint), indexNotWritable(/read-only filesystem \(EROFS\)/));
      for (const key of [keys[0]!, keys[keys.length - 1]!]) assert.deepEqual(await store.listByEmail(key.email), [key]);
      await assert.rejects(store.probeWrites!(), StoreReadOnlyError);
      assert.deepEqual(indexWarnings(logger), []);
    } finally {
      await store.close();
    }
  });

  it('names the read-only filesystem when it cannot create the database, never a SQLite error or "not an EKM database"', async () => {
    const fs = LoopExt4.create(16);
    cleanups.push(() => fs.remove());
    fs.remountReadOnly();
    await assert.rejects(openEncryptedDbStore(config(join(fs.mountPoint, 'data')), deps), (e: unknown) => {
      assert.ok(e instanceof StoreUnavailableError, String(e));
      assert.match(e.details, /^Cannot create the database .*: .* is on a read-only filesystem \(EROFS\)$/);
      return true;
    });
  });
});
