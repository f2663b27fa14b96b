import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { openPkcs11Store } from '../../../src/stores/pkcs11-store.js';
import type { Store, StoredKey } from '../../../src/stores/store.js';
import { MemoryLogger } from '../../support/memory-logger.js';
import type { HarnessCommand, HarnessReply } from './cluster-harness.js';

/**
 * A cluster worker of the harness: opens the store as the daemon's workers do, runs commands.
 * The test runner also loads this file as a test file; it then does nothing.
 */
const module = process.env.EKM_TEST_PKCS11_MODULE;
const store = cluster.isWorker && module !== undefined ? await openPkcs11Store({ type: 'Pkcs11Store', module, pin: '' }, { logger: new MemoryLogger() }) : undefined;

if (store !== undefined) {
  process.on('message', (m: HarnessCommand) => {
    if (m?.tag !== 'ekm.test.command') return;
    run(store, m).then(
      (value) => process.send!({ tag: 'ekm.test.reply', id: m.id, ok: true, value } satisfies HarnessReply),
      (e: unknown) => process.send!({ tag: 'ekm.test.reply', id: m.id, ok: false, error: { name: (e as Error).name, code: (e as { code?: string }).code ?? '' } } satisfies HarnessReply),
    );
  });
  process.send!({ tag: 'ekm.test.ready' });
}

async function run(store: Store, m: HarnessCommand): Promise<unknown> {
  switch (m.command) {
    case 'upsert':
      return store.upsert(m.key!);
    case 'list':
      return store.listByEmail(m.email!);
    case 'delete':
      return store.delete(m.email!, m.fingerprint!);
    case 'all': {
      const keys: StoredKey[] = [];
      for await (const k of store.all()) keys.push(k);
      return keys.length;
    }
    case 'modules':
      // Proof that the worker never loaded the PKCS#11 module itself.
      return readFileSync('/proc/self/maps', 'utf8').includes('softhsm');
    case 'bench': {
      // Sequential lookups with the event loop watched at 1 ms resolution.
      const h = monitorEventLoopDelay({ resolution: 1 });
      const elu = performance.eventLoopUtilization();
      h.enable();
      const latencies: number[] = [];
      for (const email of m.emails!) {
        const t = process.hrtime.bigint();
        const keys = await store.listByEmail(email);
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (keys.length !== 1) throw new Error(`expected one key for a benchmark user, got ${keys.length}`);
      }
      h.disable();
      return { latencies, maxEventLoopDelayMs: h.max / 1e6, eventLoopUtilization: performance.eventLoopUtilization(elu).utilization };
    }
    case 'observe': {
      // An idle process's event loop over the same time: the delay the machine itself causes.
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      await new Promise((resolve) => setTimeout(resolve, m.durationMs));
      h.disable();
      return h.max / 1e6;
    }
    case 'close':
      await store.close();
      return null;
  }
}
