import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { KeyRejectedError, KeyVerificationBusyError } from '../../src/errors.js';
import { checkKeyStructure } from '../../src/keys/key-structure-check.js';
import { KeyVerificationPool } from '../../src/keys/key-verification-pool.js';
import { validatePrivateKey } from '../../src/keys/private-key-policy.js';
import { rsaExponentBomb, rsaVerificationWorkKey } from '../support/crafted-keys.js';
import { makePrivateKey } from '../support/openpgp-keys.js';

/** A promise whose rejection is handled later (an assert.rejects after other awaits) without being reported as unhandled. */
const later = <T>(promise: Promise<T>): Promise<T> => {
  promise.catch(() => undefined);
  return promise;
};

const checked = async (armored: string) => checkKeyStructure((await openpgp.unarmor(armored)).data as Uint8Array);

describe('key verification pool', () => {
  /** About 0.3-1 s of RSA verifications in a thread (two user ids for the email, 16 failing self-signatures and 15 failing revocations each). */
  let slowArmored: string;
  let normal: Awaited<ReturnType<typeof makePrivateKey>>;
  let normalBinary: Uint8Array;
  /** The report's key (RSA 16384, 16384-bit exponent, SHA-224), never shown to checkKeyStructure. */
  let bomb: Uint8Array;
  const pools: KeyVerificationPool[] = [];
  const pool = (options: ConstructorParameters<typeof KeyVerificationPool>[0]) => {
    const p = new KeyVerificationPool(options);
    pools.push(p);
    return p;
  };

  before(async () => {
    slowArmored = rsaVerificationWorkKey('slow@example.com', { modulusBits: 2048, publicExponent: 65537, users: 2, selfCertifications: 16, revocations: 15 });

    normal = await makePrivateKey('normal@example.com');
    normalBinary = await checked(normal.armored);
    bomb = (await openpgp.unarmor(rsaExponentBomb('mallory@example.com'))).data as Uint8Array;
  });
  after(async () => {
    await Promise.all(pools.map((p) => p.close()));
  });

  it('verifies off the event loop: timers keep firing while validatePrivateKey takes its time', async (t) => {
    await validatePrivateKey(normal.armored, 'normal@example.com'); // the shared pool's thread is up
    let last = performance.now();
    let worstGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
    }, 5);
    const started = performance.now();
    const elu = performance.eventLoopUtilization();
    await assert.rejects(validatePrivateKey(slowArmored, 'slow@example.com'), /not validly self-certified/);
    const busy = performance.eventLoopUtilization(elu).utilization;
    const took = performance.now() - started;
    clearInterval(ticker);
    t.diagnostic(`slow key: ${took.toFixed(0)} ms; event loop busy ${(100 * busy).toFixed(0)}% of it, longest gap between 5 ms timers ${worstGap.toFixed(0)} ms`);
    // In this thread the key costs a parse (a few %); verified here, OpenPGP.js's JavaScript around each RSA operation takes most of the time.
    assert.ok(busy < 0.6, `the event loop was busy ${(100 * busy).toFixed(0)}% of the verification`);
    assert.ok(took > 80, `the slow key took only ${took.toFixed(0)} ms: it no longer measures anything`);
    assert.ok(worstGap < Math.max(100, took / 3), `the event loop stalled for ${worstGap.toFixed(0)} ms of ${took.toFixed(0)} ms`);
  });

  it('refuses a key past the deadline with a 400, terminates its thread and verifies the next key on a new one', async () => {
    // The pool verifies whatever it is given: the report's key, unchecked, takes seconds per signature.
    const p = pool({ deadlineMs: 1_000 });
    assert.equal((await p.verify(normalBinary, 'normal@example.com', new Date())).fingerprint, normal.fingerprint);
    const [first] = p.threadIds();
    assert.ok(first !== undefined);
    const started = performance.now();
    await assert.rejects(p.verify(bomb, 'mallory@example.com', new Date()), (e: unknown) => {
      assert.ok(e instanceof KeyRejectedError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.message, 'The key took too long to verify');
      return true;
    });
    assert.ok(performance.now() - started < 1_900, `answered after ${(performance.now() - started).toFixed(0)} ms`);
    assert.deepEqual(p.threadIds(), [], 'the thread past its deadline is gone');
    assert.equal((await p.verify(normalBinary, 'normal@example.com', new Date())).fingerprint, normal.fingerprint);
    const [second] = p.threadIds();
    assert.ok(second !== undefined && second !== first, `thread ${String(second)} replaced ${first}`);
  });

  it('answers 503 with Retry-After when the queue is full or a key waited too long', async () => {
    const full = pool({ maxQueued: 1, queueWaitMs: 10_000, deadlineMs: 1_000 });
    await full.verify(normalBinary, 'normal@example.com', new Date()); // the thread is up: a key waiting for it to start would fill the queue
    const running = later(full.verify(bomb, 'mallory@example.com', new Date()));
    const queued = later(full.verify(normalBinary, 'normal@example.com', new Date()));
    await assert.rejects(full.verify(normalBinary, 'normal@example.com', new Date()), (e: unknown) => {
      assert.ok(e instanceof KeyVerificationBusyError, String(e));
      assert.equal(e.status, 503);
      assert.equal(e.retryAfterSeconds, 1);
      return true;
    });
    await assert.rejects(running, /took too long/);
    assert.equal((await queued).fingerprint, normal.fingerprint, 'a queued key is verified once a thread is free');

    const impatient = pool({ queueWaitMs: 1_000, deadlineMs: 3_000 });
    await impatient.verify(normalBinary, 'normal@example.com', new Date());
    // Waiting for a thread to start is not waiting behind other keys: never a 503, however slow the start.
    const cold = pool({ queueWaitMs: 1 });
    assert.equal((await cold.verify(normalBinary, 'normal@example.com', new Date())).fingerprint, normal.fingerprint);
    const bombed = later(impatient.verify(bomb, 'mallory@example.com', new Date()));
    const started = performance.now();
    await assert.rejects(impatient.verify(normalBinary, 'normal@example.com', new Date()), KeyVerificationBusyError);
    assert.ok(performance.now() - started >= 990, 'it waited its turn first');
    await assert.rejects(bombed, /took too long/);
  });

  it('fails queued keys when closed', async () => {
    const p = pool({});
    await p.verify(normalBinary, 'normal@example.com', new Date());
    const running = later(p.verify(bomb, 'mallory@example.com', new Date()));
    const queued = later(p.verify(normalBinary, 'normal@example.com', new Date()));
    await p.close();
    await assert.rejects(running, /closed/);
    await assert.rejects(queued, /closed/);
    await assert.rejects(p.verify(normalBinary, 'normal@example.com', new Date()), /closed/);
  });

  it('never keeps a process alive once its keys are verified (a CLI exits by itself)', async () => {
    const policy = resolve(import.meta.dirname, '../../src/keys/private-key-policy.js');
    const script = `const { validatePrivateKey } = await import(${JSON.stringify(policy)});
      const key = await validatePrivateKey(process.env.KEY, 'normal@example.com');
      console.log(key.fingerprint);`;
    // A file, as the CLI is: a Worker inherits --input-type from an -e parent and fails on it.
    const file = join(mkdtempSync(join(tmpdir(), 'ekm-pool-cli-')), 'validate.mjs');
    writeFileSync(file, script);
    const child = spawn(process.execPath, [file], { env: { ...process.env, KEY: normal.armored }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(timer);
    assert.equal(signal, null, 'the process had to be killed: the pool kept it alive');
    assert.equal(code, 0);
    assert.equal(out.trim(), normal.fingerprint);
  });
});
