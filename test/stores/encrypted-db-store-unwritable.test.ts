import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { EncryptedDbStoreConfig } from '../../src/config/config.js';
import { StoreReadOnlyError, StoreUnavailableError } from '../../src/errors.js';
import { DB_FILE_NAME, openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import { runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { LoopExt4, mountUnsupportedReason } from '../support/test-filesystems.js';
import { makeKey } from './store-conformance.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

const deps = { logger: new MemoryLogger() };
const config = (folder: string): EncryptedDbStoreConfig => ({ type: 'EncryptedDbStore', folder, encryptionKey: 'unwritable store test' });
const storeCheckProperties = (folder: string) => ({ ...baseProperties({ orgId: 'unwritable.org' }), ...encryptedDbProperties(folder, config(folder).encryptionKey) });
const chattr = (flag: '+i' | '-i', ...files: string[]) => execFileSync('chattr', [flag, ...files]);

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
