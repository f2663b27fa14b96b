import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Pkcs11StoreConfig } from '../../../src/config/config.js';
import { openPkcs11Store } from '../../../src/stores/pkcs11-store.js';
import type { Store, StoredKey } from '../../../src/stores/store.js';
import { MemoryLogger } from '../../support/memory-logger.js';
import { SOFTHSM2_MODULE, createSoftHsmToken, useSoftHsmToken } from '../../../testbed/softhsm-token.js';
import { makeKey } from '../store-conformance.js';
import type { StoreProcessCommand } from './store-process.js';

const token = createSoftHsmToken();
useSoftHsmToken(token);
const config: Pkcs11StoreConfig = { type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin };

type Command = StoreProcessCommand extends infer C ? (C extends unknown ? Omit<C, 'id'> : never) : never;

/**
 * Two processes that each hold their own PKCS#11 session, as `--import` running beside the service
 * does. SoftHSM2 keeps an in-process index of the token that a process's own write can leave blind
 * to another process's earlier write; both must still see each other's writes at once.
 */
describe('Pkcs11Store in two processes that each load the module', () => {
  let store: Store;
  let child: ChildProcess;
  let nextId = 1;
  const ask = <T>(command: Command) =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      const onMessage = (m: { id?: number; ok?: boolean; value?: unknown; error?: string }) => {
        if (m.id !== id) return;
        child.off('message', onMessage);
        if (m.ok) resolve(m.value as T);
        else reject(new Error(m.error));
      };
      child.on('message', onMessage);
      child.send({ ...command, id });
    });

  before(async () => {
    store = await openPkcs11Store(config, { logger: new MemoryLogger() });
    child = fork(fileURLToPath(new URL('./store-process.js', import.meta.url)), { env: { ...process.env, EKM_TEST_STORE_PROCESS: JSON.stringify({ module: config.module, pin: config.pin }) } });
    await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`store process exited with ${code}`)));
    });
  });
  after(async () => {
    await ask({ command: 'close' });
    await store.close();
    token.remove();
  });

  it('each sees the other\'s writes and deletes although both write in between, 25 times', async () => {
    for (let i = 0; i < 25; i++) {
      const theirs = makeKey(`theirs${i}@processes.example`);
      const ours = makeKey(`ours${i}@processes.example`);
      assert.equal(await ask({ command: 'upsert', key: theirs }), 'added');
      assert.equal(await store.upsert(ours), 'added');
      assert.deepEqual(await store.listByEmail(theirs.email), [theirs], `round ${i}: this process misses the other's write`);
      assert.deepEqual(await ask<StoredKey[]>({ command: 'list', email: ours.email }), [ours], `round ${i}: the other process misses this one's write`);
      // A fingerprint the other process holds is a conflict here too.
      await assert.rejects(store.upsert({ ...theirs, email: `thief${i}@processes.example` }), { code: 'ERR_FINGERPRINT_CONFLICT' });
      assert.equal(await ask({ command: 'delete', email: ours.email, fingerprint: ours.fingerprint }), true);
      assert.equal(await store.upsert(makeKey(`more${i}@processes.example`)), 'added');
      assert.deepEqual(await store.listByEmail(ours.email), [], `round ${i}: this process still serves a deleted key`);
    }
  });

  it('each sees all of the other\'s writes made at the same time as its own', async () => {
    const theirs = Array.from({ length: 150 }, (_, i) => makeKey(`race-theirs${i}@processes.example`));
    const ours = Array.from({ length: 150 }, (_, i) => makeKey(`race-ours${i}@processes.example`));
    await Promise.all([
      (async () => {
        for (const k of theirs) await ask({ command: 'upsert', key: k });
      })(),
      (async () => {
        for (const k of ours) await store.upsert(k);
      })(),
    ]);
    const missedHere: string[] = [];
    for (const k of theirs) if ((await store.listByEmail(k.email)).length !== 1) missedHere.push(k.email);
    const missedThere = [];
    for (const k of ours) if ((await ask<StoredKey[]>({ command: 'list', email: k.email })).length !== 1) missedThere.push(k.email);
    assert.deepEqual({ missedHere, missedThere }, { missedHere: [], missedThere: [] });
  });
});
