import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { KmipStoreConfig } from '../../../src/config/config.js';
import { openKmipStore } from '../../../src/stores/kmip-store.js';
import type { StoredKey } from '../../../src/stores/store.js';
import { MemoryLogger } from '../../support/memory-logger.js';

/**
 * A KmipStore in a process of its own, for tests of several EKM processes sharing one KMIP server.
 * The parent calls runStoreProcess(); the child (this file, run with EKM_KMIP_STORE_PROCESS=1) opens
 * the store, does the job read from stdin and prints the result as JSON.
 */
export type StoreJob = { readonly write: readonly StoredKey[] } | { readonly read: readonly string[] };

export async function runStoreProcess(config: KmipStoreConfig, job: StoreJob): Promise<unknown> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...process.env, EKM_KMIP_STORE_PROCESS: '1', EKM_KMIP_CONFIG: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.end(JSON.stringify(job));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`store process exited with ${code}: ${err}`);
  return JSON.parse(out);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.EKM_KMIP_CONFIG!) as KmipStoreConfig;
  let input = '';
  for await (const chunk of process.stdin) input += String(chunk);
  const job = JSON.parse(input) as StoreJob;
  const store = await openKmipStore(config, { logger: new MemoryLogger(), setup: true });
  try {
    if ('write' in job) {
      process.stdout.write(JSON.stringify(await Promise.all(job.write.map((k) => store.upsert(k)))));
    } else {
      process.stdout.write(JSON.stringify(await Promise.all(job.read.map((email) => store.listByEmail(email)))));
    }
  } finally {
    await store.close();
  }
}

// Only as the child process: `node --test` may load this file too, where it must do nothing.
if (process.env.EKM_KMIP_STORE_PROCESS === '1') await main();
