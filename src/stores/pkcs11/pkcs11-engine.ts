import { existsSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { Pkcs11StoreConfig } from '../../config/config.js';
import { ConfigError, StoreUnavailableError } from '../../errors.js';
import type { Logger } from '../../logging/logger.js';
import { type EngineChannel, type EngineRequest, type EngineResult, fromWireError } from './engine-protocol.js';
import type { EngineThreadData, FromEngine, ToEngine } from './engine-thread.js';

/** A request the engine has not answered in this time is answered 503 (a hung HSM must not hang clients). */
const REQUEST_TIMEOUT_MS = 30_000;

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** One engine per module per process: the module's C_Initialize/C_Finalize state is process-wide. */
const engines = new Map<string, { engine: Pkcs11Engine; users: number }>();

/**
 * The owner's handle on the engine thread (engine-thread.ts), which alone calls the PKCS#11 module.
 * Requests are queued to it and answered in order. If the thread dies, pending requests get 503 and
 * the next request starts a new thread (which reconnects), so even a crashed engine recovers.
 */
export class Pkcs11Engine implements EngineChannel {
  private thread: Worker | undefined;
  private starting: Promise<Worker> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closing = false;

  private constructor(
    private readonly config: Pkcs11StoreConfig,
    private readonly logger: Logger,
    private readonly tolerateOutage: boolean,
  ) {}

  /**
   * The engine of this module, started (module loaded, token logged in, keys found or generated) on
   * first use. Throws ConfigError for operator mistakes, StoreUnavailableError for outages.
   * Every acquire is paired with one `release`.
   */
  static async acquire(config: Pkcs11StoreConfig, logger: Logger, options: { tolerateOutage: boolean }): Promise<Pkcs11Engine> {
    const shared = engines.get(config.module);
    if (shared !== undefined) {
      if (shared.engine.config.pin !== config.pin) throw new ConfigError(`The PKCS#11 module ${config.module} is already open in this process with another store.pkcs11.pin`);
      shared.users++;
      return shared.engine;
    }
    checkModuleFile(config.module);
    const engine = new Pkcs11Engine(config, logger.child({ component: 'pkcs11' }), options.tolerateOutage);
    const entry = { engine, users: 1 };
    engines.set(config.module, entry);
    try {
      await engine.start();
    } catch (e) {
      engines.delete(config.module);
      throw e;
    }
    return engine;
  }

  call<R extends EngineRequest>(request: R): Promise<EngineResult<R>> {
    return this.send(request) as Promise<EngineResult<R>>;
  }

  /** Gives back one acquire; the last one stops the thread (C_Logout, C_Finalize). */
  async release(): Promise<void> {
    const shared = engines.get(this.config.module);
    if (shared?.engine !== this || --shared.users > 0) return;
    engines.delete(this.config.module);
    this.closing = true;
    const thread = this.thread ?? (await this.starting?.catch(() => undefined));
    if (thread === undefined) return;
    await new Promise<void>((resolve) => {
      thread.once('exit', () => resolve());
      thread.postMessage({ close: true } satisfies ToEngine);
      // A thread stuck in a hung module call cannot close cleanly; do not hang shutdown on it.
      setTimeout(() => void thread.terminate(), 5_000).unref();
    });
  }

  private async send(request: EngineRequest): Promise<unknown> {
    if (this.closing) throw new StoreUnavailableError('The PKCS#11 store is closed');
    const thread = this.thread ?? (await this.restart());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new StoreUnavailableError(`The HSM did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      thread.postMessage({ id, request } satisfies ToEngine);
    });
  }

  /** A new engine thread after the last one died (it starts disconnected if the HSM is down); what would stop the service at start is a 503 now. */
  private async restart(): Promise<Worker> {
    try {
      return await this.start(true);
    } catch (e) {
      if (e instanceof StoreUnavailableError) throw e;
      throw new StoreUnavailableError(`The PKCS#11 engine could not restart (${e instanceof Error ? e.message.split(':')[0] : 'unknown'})`, { cause: e });
    }
  }

  private start(tolerateOutage = this.tolerateOutage): Promise<Worker> {
    this.starting ??= new Promise<Worker>((resolve, reject) => {
      const data: EngineThreadData = { module: this.config.module, pin: this.config.pin, tolerateOutage };
      const thread = new Worker(new URL('./engine-thread.js', import.meta.url), { workerData: data });
      let ready = false;
      thread.on('message', (m: FromEngine) => {
        switch (m.type) {
          case 'ready':
            ready = true;
            this.thread = thread;
            this.logger.info('PKCS#11 session started', { token: m.tokenLabel });
            resolve(thread);
            break;
          case 'failed':
            reject(fromWireError(m.error));
            void thread.terminate();
            break;
          case 'log':
            this.logger.log(m.level, m.message, m.fields);
            break;
          case 'reply': {
            const p = this.pending.get(m.reply.id);
            if (p === undefined) return;
            this.pending.delete(m.reply.id);
            clearTimeout(p.timer);
            if (m.reply.ok) p.resolve(m.reply.value);
            else p.reject(fromWireError(m.reply.error));
            break;
          }
          case 'closed':
            break;
        }
      });
      thread.on('error', (thrown: unknown) => {
        const name = thrown instanceof Error ? thrown.name : typeof thrown;
        // Only the error's name: a module's message could echo what it was given.
        this.logger.error('The PKCS#11 engine thread failed', { error: name });
        if (!ready) reject(new StoreUnavailableError(`The PKCS#11 engine could not start (${name})`));
      });
      thread.on('exit', () => {
        if (this.thread === thread) this.thread = undefined;
        this.starting = undefined;
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new StoreUnavailableError('The PKCS#11 engine stopped; the next request restarts it'));
          this.pending.delete(id);
        }
        if (!ready) reject(new StoreUnavailableError('The PKCS#11 engine stopped while starting'));
      });
    });
    return this.starting;
  }
}

/** The two operator mistakes a file check can name before the module is loaded. */
function checkModuleFile(module: string): void {
  if (!existsSync(module)) {
    throw new ConfigError(`store.pkcs11.module: ${module} does not exist. Install your HSM vendor's PKCS#11 library and give its path (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).`);
  }
  if (!statSync(module).isFile()) throw new ConfigError(`store.pkcs11.module: ${module} is not a file (a PKCS#11 library .so is expected)`);
}
