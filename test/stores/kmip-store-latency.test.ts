import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openKmipStore } from '../../src/stores/kmip-store.js';
import { queryOperations } from '../../src/stores/kmip/kmip-messages.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { percentile } from '../support/percentile.js';
import type { PykmipServer } from '../../testbed/pykmip-server.js';
import { pykmipServerPerSuite } from '../support/pykmip-per-suite.js';
import { makeKey } from './store-conformance.js';

const ROUNDS = 300;

describe('KmipStore latency on PyKMIP', () => {
  const kmip = pykmipServerPerSuite();

  it(`reads a key (one Locate + one Get) on a reused connection: median and p99 over ${ROUNDS} reads`, async (t) => {
    const store = await openKmipStore(kmip().storeConfig(), { logger: new MemoryLogger(), setup: true });
    const key = makeKey('latency@example.com');
    await store.upsert(key);
    // A handful of other users' keys, as on a small real server (Locate is linear in objects stored).
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.upsert(makeKey(`other${i}@example.com`))));
    const times: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const started = process.hrtime.bigint();
      const keys = await store.listByEmail(key.email);
      times.push(Number(process.hrtime.bigint() - started) / 1e6);
      assert.equal(keys.length, 1);
    }
    times.sort((a, b) => a - b);
    const median = percentile(times, 50);
    const p99 = percentile(times, 99);
    t.diagnostic(`Locate+Get of a ${key.privateKey.length}-byte key among 12 objects, reused connection: median ${median.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${times.at(-1)!.toFixed(1)} ms`);
    assert.ok(median < 500, `median ${median} ms: is every read opening a new connection?`);
    await store.close();
  });

  it('a reused connection saves the TLS handshake', async (t) => {
    const timeQuery = async (client: ReturnType<PykmipServer['kmipClient']>) => {
      const started = process.hrtime.bigint();
      await client.one(queryOperations(), 'Query');
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    const fresh: number[] = [];
    const reused: number[] = [];
    for (let i = 0; i < 10; i++) {
      const client = kmip().kmipClient();
      fresh.push(await timeQuery(client));
      reused.push(await timeQuery(client));
      await client.close();
    }
    fresh.sort((a, b) => a - b);
    reused.sort((a, b) => a - b);
    t.diagnostic(`Query round trip: new connection median ${percentile(fresh, 50).toFixed(1)} ms, reused connection median ${percentile(reused, 50).toFixed(1)} ms`);
    assert.ok(percentile(reused, 50) < percentile(fresh, 50));
  });
});
