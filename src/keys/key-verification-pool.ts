import { Worker } from 'node:worker_threads';
import { KeyRejectedError, KeyVerificationBusyError } from '../errors.js';
import type { ValidatedKey } from './private-key-policy.js';
import type { VerificationReply, VerificationRequest } from './key-verification-thread.js';

/** Verification threads per process: one per daemon worker, and the daemon runs one worker per CPU. */
export const KEY_VERIFICATION_THREADS = 1;
/**
 * Longest a key's verification may run before its thread is terminated and the key refused (400).
 * A backstop: keys within the structure limits verify in well under 100 ms.
 */
export const KEY_VERIFICATION_DEADLINE_MS = 2_000;
/** Most keys waiting for a verification thread per process; more are answered 503 at once. */
export const MAX_QUEUED_KEY_VERIFICATIONS = 32;
/** Longest a key waits behind other keys' verifications before a 503: with the deadline, bounds a PUT's answer to about 4 s. */
export const KEY_VERIFICATION_QUEUE_WAIT_MS = 2_000;
/** An idle verification thread ends after this long, giving back the 20-30 MB it holds (OpenPGP.js loaded in it). */
const IDLE_THREAD_MS = 10 * 60_000;

const THREAD_URL = new URL('./key-verification-thread.js', import.meta.url);

interface Job {
  readonly request: VerificationRequest;
  readonly resolve: (key: ValidatedKey) => void;
  readonly reject: (e: unknown) => void;
  waitTimer?: NodeJS.Timeout;
}

interface Thread {
  readonly worker: Worker;
  ready: boolean;
  job?: Job;
  deadlineTimer?: NodeJS.Timeout;
  idleTimer?: NodeJS.Timeout;
}

/** Options for tests; production uses the defaults above. */
export interface KeyVerificationPoolOptions {
  readonly threads?: number;
  readonly deadlineMs?: number;
  readonly maxQueued?: number;
  readonly queueWaitMs?: number;
}

/**
 * A small `worker_threads` pool that verifies keys (verifyPrivateKey) off the event loop, one key
 * per thread at a time, so key crypto never stalls the requests a worker serves. A verification
 * that passes the deadline is refused and its thread terminated, which stops the work; the next
 * key gets a new thread. Threads start on the first key and end when idle; they never keep a
 * process alive (a CLI exits when its work is done) except while verifying.
 */
export class KeyVerificationPool {
  private readonly threads = new Set<Thread>();
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  private readonly size: number;
  private readonly deadlineMs: number;
  private readonly maxQueued: number;
  private readonly queueWaitMs: number;

  constructor(options: KeyVerificationPoolOptions = {}) {
    this.size = options.threads ?? KEY_VERIFICATION_THREADS;
    this.deadlineMs = options.deadlineMs ?? KEY_VERIFICATION_DEADLINE_MS;
    this.maxQueued = options.maxQueued ?? MAX_QUEUED_KEY_VERIFICATIONS;
    this.queueWaitMs = options.queueWaitMs ?? KEY_VERIFICATION_QUEUE_WAIT_MS;
  }

  /** Verifies a key that passed checkKeyStructure; rejects with KeyRejectedError (400) or KeyVerificationBusyError (503). */
  verify(binary: Uint8Array, email: string, now: Date): Promise<ValidatedKey> {
    if (this.closed) return Promise.reject(new Error('The key verification pool is closed'));
    return new Promise<ValidatedKey>((resolve, reject) => {
      const job: Job = { request: { id: this.nextId++, binary, email, now: now.getTime() }, resolve, reject };
      if (this.queue.length >= this.maxQueued) {
        reject(new KeyVerificationBusyError(`${this.queue.length} keys are already waiting for verification`));
        return;
      }
      this.queue.push(job);
      this.dispatch();
    });
  }

  /** The thread ids of the running threads (for tests: a thread past its deadline is replaced). */
  threadIds(): number[] {
    return [...this.threads].map((t) => t.worker.threadId);
  }

  /** Terminates every thread; queued and running verifications fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) {
      clearTimeout(job.waitTimer);
      job.reject(new Error('The key verification pool is closed'));
    }
    await Promise.all([...this.threads].map((t) => this.end(t, new Error('The key verification pool is closed'))));
  }

  /**
   * Starts queued jobs on ready idle threads, starting threads up to the pool size. A job left
   * waiting behind other keys' verifications gets its wait limit; one waiting for a thread to start
   * does not (a start under load can take seconds, and is no reason to turn a key away).
   */
  private dispatch(): void {
    for (const thread of this.threads) {
      if (this.queue.length === 0) return;
      if (thread.ready && thread.job === undefined) this.run(thread, this.queue.shift()!);
    }
    let starting = [...this.threads].filter((t) => !t.ready).length;
    for (; this.queue.length > starting && this.threads.size < this.size; starting += 1) this.start();
    if (starting > 0) return;
    for (const job of this.queue) {
      job.waitTimer ??= setTimeout(() => {
        this.queue.splice(this.queue.indexOf(job), 1);
        job.reject(new KeyVerificationBusyError(`The key waited ${this.queueWaitMs} ms for a verification thread`));
      }, this.queueWaitMs);
    }
  }

  private start(): void {
    const worker = new Worker(THREAD_URL);
    worker.unref();
    const thread: Thread = { worker, ready: false };
    this.threads.add(thread);
    worker.on('message', (reply: VerificationReply) => {
      if ('ready' in reply) {
        thread.ready = true;
        this.idle(thread);
        this.dispatch();
        return;
      }
      const job = thread.job;
      if (job?.request.id !== reply.id) return;
      this.finish(thread);
      if ('key' in reply) job.resolve(reply.key);
      else if ('rejected' in reply) job.reject(new KeyRejectedError(reply.rejected.message, reply.rejected.details));
      else job.reject(new Error(`Key verification failed unexpectedly (${reply.failed})`));
      this.idle(thread);
      this.dispatch();
    });
    const lost = (reason: string) => {
      if (!this.threads.delete(thread)) return;
      clearTimeout(thread.deadlineTimer);
      clearTimeout(thread.idleTimer);
      thread.job?.reject(new Error(`The key verification thread ${reason}`));
      // A thread that cannot start fails the waiting keys rather than being restarted in a loop.
      if (!thread.ready) for (const job of this.queue.splice(0)) {
        clearTimeout(job.waitTimer);
        job.reject(new Error(`The key verification thread ${reason}`));
      }
      this.dispatch();
    };
    worker.on('error', (e: unknown) => lost(`failed: ${e instanceof Error ? e.name : typeof e}`));
    worker.on('exit', (code) => lost(`exited with code ${code}`));
  }

  private run(thread: Thread, job: Job): void {
    clearTimeout(job.waitTimer);
    clearTimeout(thread.idleTimer);
    thread.job = job;
    // Referenced while it works: a CLI awaiting the answer must not exit under it.
    thread.worker.ref();
    thread.deadlineTimer = setTimeout(() => {
      job.reject(new KeyRejectedError('The key took too long to verify', `Verification is limited to ${this.deadlineMs} ms`));
      void this.end(thread);
      this.dispatch();
    }, this.deadlineMs);
    thread.worker.postMessage(job.request);
  }

  private finish(thread: Thread): void {
    clearTimeout(thread.deadlineTimer);
    thread.job = undefined;
    thread.worker.unref();
  }

  private idle(thread: Thread): void {
    clearTimeout(thread.idleTimer);
    thread.idleTimer = setTimeout(() => void this.end(thread), IDLE_THREAD_MS);
    thread.idleTimer.unref();
  }

  /** Removes a thread and terminates it; a job it was running is rejected with `reason`. */
  private async end(thread: Thread, reason?: Error): Promise<void> {
    if (!this.threads.delete(thread)) return;
    clearTimeout(thread.deadlineTimer);
    clearTimeout(thread.idleTimer);
    if (reason !== undefined) thread.job?.reject(reason);
    thread.job = undefined;
    await thread.worker.terminate();
  }
}

/** The process's pool: validatePrivateKey's, shared by the routes and the import command. */
export const keyVerificationPool = new KeyVerificationPool();
