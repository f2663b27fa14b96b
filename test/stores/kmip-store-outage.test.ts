import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { StoreUnavailableError } from '../../src/errors.js';
import { openKmipStore } from '../../src/stores/kmip-store.js';
import type { Store } from '../../src/stores/store.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { PykmipServer } from '../../testbed/pykmip-server.js';
import { makeKey } from './store-conformance.js';

/** Short timeouts so the test is quick; production defaults are 5 s to connect, 10 s per request. */
const POOL = { connectTimeoutMs: 1000, requestTimeoutMs: 2000 };
const BOUND_MS = POOL.requestTimeoutMs + 1000;

/** Asserts the operation fails with a 503 within the bound and returns its details. */
async function unavailable(op: () => Promise<unknown>): Promise<string> {
  const started = Date.now();
  let details = '';
  await assert.rejects(op(), (e: unknown) => {
    assert.ok(e instanceof StoreUnavailableError, `expected a StoreUnavailableError, got ${String(e)}`);
    details = e.details;
    return true;
  });
  const took = Date.now() - started;
  assert.ok(took < BOUND_MS, `took ${took} ms`);
  return details;
}

describe('KmipStore while the KMIP server is down or hung', () => {
  let kmip: PykmipServer;
  let store: Store;
  const key = makeKey('outage@example.com');
  before(async () => {
    kmip = await PykmipServer.start();
    store = await openKmipStore(kmip.storeConfig(), { logger: new MemoryLogger(), setup: true }, { pool: POOL });
    await store.upsert(key);
  });
  after(async () => {
    await store.close();
    await kmip.remove();
  });

  it('answers 503 quickly while the server is stopped, never an empty list, and recovers by itself when it is back', async () => {
    assert.deepEqual(await store.listByEmail(key.email), [key]);
    await kmip.stop();
    assert.match(await unavailable(() => store.listByEmail(key.email)), /Connection refused by the KMIP server|closed the connection/);
    assert.match(await unavailable(() => store.listByEmail(key.email)), /Connection refused by the KMIP server/);
    await unavailable(() => store.probe());
    await unavailable(() => store.upsert(makeKey('outage@example.com')));
    await unavailable(async () => {
      for await (const _key of store.all()) {
        // reading every key is the point
      }
    });
    await kmip.start();
    // No reopen, no wait: the next request connects afresh.
    assert.deepEqual(await store.listByEmail(key.email), [key]);
    await store.probe();
  });

  it('answers 503 within the request timeout while the server hangs, and recovers when it resumes', async () => {
    assert.deepEqual(await store.listByEmail(key.email), [key]);
    kmip.pause();
    try {
      // More requests than pooled connections: the pooled one times out, the others cannot connect.
      const details = await Promise.all(Array.from({ length: 6 }, () => unavailable(() => store.listByEmail(key.email))));
      for (const d of details) assert.match(d, /did not answer within|did not finish within|No KMIP connection became free/);
    } finally {
      kmip.resume();
    }
    assert.deepEqual(await store.listByEmail(key.email), [key]);
  });
});
