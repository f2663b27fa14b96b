/**
 * The stores the benchmark runs the daemon on: one entry each. A store that needs a server or a
 * token (Pkcs11Store on SoftHSM2, KmipStore on PyKMIP) joins with one entry that starts it, seeds
 * it and says how to measure its own round trip.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../src/logging/logger.js';
import { DB_FILE_NAME, openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import { openKmipStore } from '../../src/stores/kmip-store.js';
import { openPkcs11Store } from '../../src/stores/pkcs11-store.js';
import { PykmipServer } from '../../testbed/pykmip-server.js';
import { createSoftHsmToken, SOFTHSM2_MODULE, useSoftHsmToken } from '../../testbed/softhsm-token.js';
import type { Store } from '../../src/stores/store.js';
import { DOMAIN } from './fixtures.js';
import { seedStore, syntheticEmail, type BenchUser } from './seed-store.js';

export type SubjectId = 'warm-get' | 'new-token-get' | 'public-get' | 'put' | 'health';

/** One daemon start: a store of `users` users, and the subjects measured on it. */
export interface StoreRun {
  readonly users: number;
  readonly subjects: readonly SubjectId[];
  /**
   * wrk connections for this run's pairs (baseline and subject alike), when the store cannot take
   * the default's concurrency: requests queued behind a slow server only time out.
   */
  readonly connections?: number;
}

export interface PreparedStore {
  /** The daemon's store.* properties. */
  readonly properties: Readonly<Record<string, string>>;
  /** The store's own round trip (a lookup of one user's keys), in ms, measured outside the daemon. */
  roundTripMs(user: BenchUser): Promise<number>;
  release(): Promise<void>;
}

export interface StoreContext {
  readonly cacheDir: string;
  readonly users: readonly BenchUser[];
  readonly log: (line: string) => void;
}

export interface StoreUnderTest {
  readonly name: string;
  runs(quick: boolean): readonly StoreRun[];
  prepare(context: StoreContext, users: number): Promise<PreparedStore>;
}

const ALL_SUBJECTS: readonly SubjectId[] = ['warm-get', 'new-token-get', 'public-get', 'put', 'health'];

/** Logs nothing: the seeding and round-trip code opens stores outside the daemon. */
const silentLogger: Logger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  audit: () => undefined,
  setLevel: () => undefined,
  child: () => silentLogger,
  flush: async () => undefined,
};

/**
 * EncryptedDbStore: seeded once per size through the store itself and kept in the cache folder.
 * Seeding writes to /dev/shm when there is one (the store's synchronous=FULL commits cost an fsync
 * each, about 4 ms here: 100,000 of them would take minutes) and the finished file is copied to disk.
 */
const encryptedDbStore: StoreUnderTest = {
  name: 'EncryptedDbStore',
  runs: (quick) =>
    quick
      ? [{ users: 1_000, subjects: ALL_SUBJECTS }, { users: 100, subjects: ['warm-get'] }]
      : [{ users: 10_000, subjects: ALL_SUBJECTS }, { users: 100, subjects: ['warm-get'] }, { users: 100_000, subjects: ['warm-get'] }],
  async prepare({ cacheDir, users, log }, size) {
    const folder = join(cacheDir, `encrypted-db-${size}`);
    const markerFile = join(folder, 'seeded.json');
    const marker = JSON.stringify({ size, fingerprints: users.map((u) => u.fingerprint) });
    if (!existsSync(markerFile) || readFileSync(markerFile, 'utf8') !== marker) {
      rmSync(folder, { recursive: true, force: true });
      mkdirSync(folder, { recursive: true, mode: 0o700 });
      const passphrase = randomBytes(24).toString('base64');
      const scratch = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ekm-bench-seed-'));
      try {
        log(`Seeding EncryptedDbStore with ${size.toLocaleString('en')} users (cached in ${folder} for later runs)`);
        const started = Date.now();
        await seedThrough(() => openEncryptedDbStore({ type: 'EncryptedDbStore', folder: scratch, encryptionKey: passphrase }, { logger: silentLogger }), users, size, progressLog(log, size));
        copyFileSync(join(scratch, DB_FILE_NAME), join(folder, DB_FILE_NAME));
        log(`  seeded in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      writeFileSync(join(folder, 'passphrase'), passphrase, { mode: 0o600 });
      writeFileSync(markerFile, marker);
    }
    const passphrase = readFileSync(join(folder, 'passphrase'), 'utf8');
    const properties = { 'store.type': 'EncryptedDbStore', 'store.db.folder': folder, 'store.db.encryption.key': passphrase };
    return {
      properties,
      async roundTripMs(user) {
        // Each user once: a first read goes to SQLite and decrypts; the store keeps recent reads
        // (about 4 us to answer again), which would make a repeated lookup measure nothing.
        const emails = [user.email, ...Array.from({ length: Math.min(size - users.length, 499) }, (_, i) => syntheticEmail(users.length + i, DOMAIN))];
        return lookupMedianMs(() => openEncryptedDbStore({ type: 'EncryptedDbStore', folder, encryptionKey: passphrase }, { logger: silentLogger }), emails);
      },
      release: async () => undefined,
    };
  },
};

/** Seeding progress as "  n of size" lines. */
function progressLog(log: (line: string) => void, size: number): (written: number) => void {
  return (n) => log(`  ${n.toLocaleString('en')} of ${size.toLocaleString('en')}`);
}

/** Writes the bench users and synthetic ones up to `size` through a store opened for the purpose. */
async function seedThrough(open: () => Promise<Store>, users: readonly BenchUser[], size: number, progress?: (written: number) => void): Promise<void> {
  const store = await open();
  try {
    await seedStore(store, users, size, DOMAIN, progress);
  } finally {
    await store.close();
  }
}

/**
 * The median time of one `listByEmail` per email (a user may be listed several times) on a store
 * opened for the purpose; each must find exactly the one seeded key.
 */
async function lookupMedianMs(open: () => Promise<Store>, emails: readonly string[]): Promise<number> {
  const store = await open();
  try {
    const samples: number[] = [];
    for (const email of emails) {
      const started = performance.now();
      const found = (await store.listByEmail(email)).length;
      samples.push(performance.now() - started);
      if (found !== 1) throw new Error(`${store.type} lost ${email}'s key`);
    }
    samples.sort((a, b) => a - b);
    return samples[Math.floor(samples.length / 2)]!;
  } finally {
    await store.close();
  }
}

/**
 * KmipStore on a real PyKMIP server (testbed/pykmip-server.ts), seeded through the store for
 * each run. PyKMIP's Locate is linear in the objects it holds and the server is one Python process,
 * so this row is about the EKM's overhead next to the server's own round trip, at a small size.
 */
const kmipStore: StoreUnderTest = {
  name: 'KmipStore',
  // 8: the daemon's KMIP connection pool holds 4 per worker.
  runs: (quick) => [{ users: quick ? 32 : 200, subjects: ['warm-get'], connections: 8 }],
  async prepare({ users, log }, size) {
    log(`Starting PyKMIP and seeding KmipStore with ${size} users`);
    const server = await PykmipServer.start();
    try {
      const config = server.storeConfig();
      const open = (setup: boolean) => openKmipStore(config, { logger: silentLogger, setup });
      await seedThrough(() => open(true), users, size);
      return {
        properties: server.properties(),
        roundTripMs: (user) => lookupMedianMs(() => open(false), Array<string>(50).fill(user.email)),
        release: () => server.remove(),
      };
    } catch (e) {
      await server.remove();
      throw e;
    }
  },
};

/**
 * Pkcs11Store on a fresh SoftHSM2 token (testbed/softhsm-token.ts), seeded through the store
 * from this process before the daemon starts (whose primary then hosts the token session for its
 * workers); the round trip is measured the same way once the daemon has stopped.
 */
const pkcs11Store: StoreUnderTest = {
  name: 'Pkcs11Store',
  runs: (quick) => [{ users: quick ? 100 : 1_000, subjects: ['warm-get'] }],
  async prepare({ users, log }, size) {
    log(`Creating a SoftHSM2 token and seeding Pkcs11Store with ${size.toLocaleString('en')} users`);
    const token = createSoftHsmToken();
    // The daemon started next inherits it too.
    useSoftHsmToken(token);
    try {
      const config = { type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: token.userPin } as const;
      const open = () => openPkcs11Store(config, { logger: silentLogger, setup: true });
      await seedThrough(open, users, size, progressLog(log, size));
      return {
        properties: { 'store.type': 'Pkcs11Store', 'store.pkcs11.module': SOFTHSM2_MODULE, 'store.pkcs11.pin': token.userPin },
        roundTripMs: (user) => lookupMedianMs(open, Array<string>(200).fill(user.email)),
        release: async () => token.remove(),
      };
    } catch (e) {
      token.remove();
      throw e;
    }
  },
};

/** The stores measured, in order. */
export const STORES_UNDER_TEST: readonly StoreUnderTest[] = [encryptedDbStore, pkcs11Store, kmipStore];
