import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Pkcs11StoreConfig } from '../../../src/config/config.js';
import { type Pkcs11Host, startPkcs11Host } from '../../../src/stores/pkcs11/pkcs11-host.js';
import type { StoredKey } from '../../../src/stores/store.js';
import { MemoryLogger } from '../../support/memory-logger.js';

export interface HarnessCommand {
  readonly tag: 'ekm.test.command';
  readonly id: number;
  readonly command: 'upsert' | 'list' | 'delete' | 'all' | 'modules' | 'bench' | 'observe' | 'close';
  readonly key?: StoredKey;
  readonly email?: string;
  readonly fingerprint?: string;
  readonly emails?: readonly string[];
  readonly durationMs?: number;
}
export type HarnessReply =
  | { readonly tag: 'ekm.test.reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly tag: 'ekm.test.reply'; readonly id: number; readonly ok: false; readonly error: { readonly name: string; readonly code: string } };

/** This test process as a cluster primary hosting the PKCS#11 engine, with `workers` forked workers. */
export interface Harness {
  readonly host: Pkcs11Host;
  readonly workers: readonly Worker[];
  readonly logger: MemoryLogger;
  ask<T>(worker: Worker, command: Omit<HarnessCommand, 'tag' | 'id'>): Promise<T>;
  stop(): Promise<void>;
}

let nextId = 1;

/** The wiring the daemon's primary does: startPkcs11Host before forking, workers open the store. */
export async function startHarness(config: Pkcs11StoreConfig, workers: number): Promise<Harness> {
  const logger = new MemoryLogger();
  const host = await startPkcs11Host(config, logger);
  cluster.setupPrimary({ exec: fileURLToPath(new URL('./cluster-worker.js', import.meta.url)), silent: false });
  const forked = await Promise.all(
    Array.from({ length: workers }, () => {
      const w = cluster.fork({ EKM_TEST_PKCS11_MODULE: config.module });
      return new Promise<Worker>((resolve, reject) => {
        w.on('message', (m: { tag?: string }) => m?.tag === 'ekm.test.ready' && resolve(w));
        w.once('exit', (code) => reject(new Error(`worker exited with ${code} before it was ready`)));
      });
    }),
  );
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  for (const w of forked) {
    w.on('message', (m: HarnessReply) => {
      if (m?.tag !== 'ekm.test.reply') return;
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok) p?.resolve(m.value);
      else p?.reject(Object.assign(new Error(`${m.error.name} ${m.error.code}`), m.error));
    });
  }
  return {
    host,
    workers: forked,
    logger,
    ask: <T>(worker: Worker, command: Omit<HarnessCommand, 'tag' | 'id'>) =>
      new Promise<T>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        worker.send({ ...command, tag: 'ekm.test.command', id } satisfies HarnessCommand);
      }),
    stop: async () => {
      await Promise.all(
        forked.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) {
                resolve();
                return;
              }
              w.once('exit', () => resolve());
              w.kill();
            }),
        ),
      );
      await host.close();
    },
  };
}
