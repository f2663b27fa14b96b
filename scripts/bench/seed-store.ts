/**
 * Fills a store for the benchmark, through the store itself: a few users with real OpenPGP keys
 * (the ones the benchmark fetches, PUTs and looks up) and synthetic records of the same size for
 * everyone else. Generating 100,000 real keys would take hours; the store neither parses nor
 * checks what it keeps, so a record of the right size costs it what a real one does.
 */
import { randomBytes } from 'node:crypto';
import * as openpgp from 'openpgp';
import type { Store, StoredKey } from '../../src/stores/store.js';

/** A benchmarked user: a real key the EKM will serve and accept. */
export interface BenchUser {
  readonly email: string;
  readonly privateKey: string;
  readonly publicKey: string;
  readonly fingerprint: string;
}

/** RSA-3072: a size FlowCrypt users do have, and it makes the private-key answer about 5 KB. */
export const KEY_BITS = 3072;

/** Makes `count` real keys (RSA, decrypted), the way the FlowCrypt apps make them. */
export async function makeBenchUsers(count: number, domain: string): Promise<BenchUser[]> {
  const users: BenchUser[] = [];
  for (let i = 0; i < count; i++) {
    const email = `bench-user-${i}@${domain}`;
    const { privateKey, publicKey } = await openpgp.generateKey({
      userIDs: [{ name: `Bench User ${i}`, email }],
      type: 'rsa',
      rsaBits: KEY_BITS,
      format: 'armored',
    });
    const key = await openpgp.readKey({ armoredKey: publicKey });
    users.push({ email, privateKey, publicKey, fingerprint: key.getFingerprint().toUpperCase() });
  }
  return users;
}

/**
 * Writes the real users, then synthetic users up to `total`: armor of the same length as a real
 * key's (random base64, so nothing about it is cheaper to store) under a random fingerprint.
 * Calls `progress` now and then with the number written.
 */
export async function seedStore(store: Store, users: readonly BenchUser[], total: number, domain: string, progress?: (written: number) => void): Promise<void> {
  for (const user of users) {
    await store.upsert({ email: user.email, fingerprint: user.fingerprint, privateKey: user.privateKey, publicKey: user.publicKey });
  }
  const template = users[0];
  if (template === undefined) throw new TypeError('seedStore needs at least one real user as the size template');
  for (let i = users.length; i < total; i++) {
    const record: StoredKey = {
      email: syntheticEmail(i, domain),
      fingerprint: randomBytes(20).toString('hex').toUpperCase(),
      privateKey: lookalikeArmor(template.privateKey, 'PRIVATE'),
      publicKey: lookalikeArmor(template.publicKey, 'PUBLIC'),
    };
    await store.upsert(record);
    if (progress !== undefined && i % 5000 === 0) progress(i);
  }
}

/** The email of the i-th synthetic user (i counts the real users too). */
export function syntheticEmail(i: number, domain: string): string {
  return `synthetic-${i}@${domain}`;
}

function lookalikeArmor(real: string, kind: 'PRIVATE' | 'PUBLIC'): string {
  const bodyLength = real.length - 2 * `-----BEGIN PGP ${kind} KEY BLOCK-----\n`.length;
  const body = randomBytes(Math.ceil((bodyLength * 3) / 4)).toString('base64').slice(0, bodyLength).replace(/(.{64})/g, '$1\n');
  return `-----BEGIN PGP ${kind} KEY BLOCK-----\n\n${body}\n-----END PGP ${kind} KEY BLOCK-----\n`;
}
