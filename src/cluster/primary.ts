import cluster, { type Worker } from 'node:cluster';
import { ConfigError } from '../errors.js';
import { EXIT_CONFIG, EXIT_FAILURE, EXIT_OK } from '../cli/exit-status.js';
import { prepareReload, type RunningConfig } from '../config/reload-config.js';
import type { Logger } from '../logging/logger.js';
import type { PrimaryMessage, WorkerMessage } from './messages.js';
import { verdictDirectory, writeVerdict } from './reload-verdict.js';
import { notifyServiceManager } from './service-manager.js';

/** Workers that die before they are ready this many times in a row stop the service, unless others serve. */
const MAX_START_FAILURES = 3;
/** Replacing crashed workers waits 100 ms, doubling per recent crash, up to this. */
const MAX_RESTART_DELAY_MS = 30_000;
const CRASH_WINDOW_MS = 60_000;
/**
 * Workers still running this long after a shutdown request (past the drain window) are killed: the
 * workers' own 20 s request drain and 5 s store close fit in it.
 */
const SHUTDOWN_TIMEOUT_MS = 28_000;
/** A worker started by a reload that is not serving within this is given up, and the reload with it. */
const RELOAD_START_TIMEOUT_MS = 60_000;
/**
 * V8's young generation, per semi-space, in the workers. Under load V8 grows it to its 64-bit
 * default (16 MB on Node.js 20, 32 MB on 24; three semi-spaces resident), which took workers from about 90 MB to 130-150 MB
 * RSS; at 8 MB they stay near 105 MB with no CPU difference the benchmark could measure (requests
 * allocate little that outlives them). An operator's own setting (NODE_OPTIONS or the command line)
 * is left alone.
 */
const WORKER_SEMI_SPACE_MB = 8;

/** The configuration a worker was started with; a reload replaces the workers of older ones. */
interface Generation extends RunningConfig {
  readonly id: number;
}

/** How one reload ended: the exit status of `flowcrypt-ekm --reload` and its line. */
interface ReloadOutcome {
  readonly status: number;
  readonly message: string;
}

/**
 * The primary: forks `api.workers` workers and hands each the configuration it validated, replaces
 * crashed ones with backoff, stops with the reason when workers keep failing at start and none
 * serves. On SIGHUP it reloads (validate, then replace the workers one at a time, each new one
 * serving before an old one drains); on SIGTERM every worker drains and it exits 0. Tells systemd
 * each step (READY=1, RELOADING=1, STOPPING=1). Resolves with the process exit status.
 */
export function runPrimary(initial: RunningConfig, logger: Logger): Promise<number> {
  return new Promise((resolveExit) => {
    let generations = 0;
    let current: Generation = { ...initial, id: generations };
    const workers = initial.config.api.workers;
    /** Serving workers, each with the generation it was started with. */
    const ready = new Map<Worker, Generation>();
    /** Workers started by a reload, until they serve or fail. */
    const candidates = new Map<Worker, (failure: string | undefined) => void>();
    /** Workers told to drain by a reload; their exit is expected. */
    const retiring = new Set<Worker>();
    const recentCrashes: number[] = [];
    let startFailures = 0;
    let lastStartFailure: { reason: string; configError: boolean } | undefined;
    let stopping = false;
    let announced = false;
    /** When the latest SIGHUP not yet acted on arrived. */
    let reloadSignalledAt: number | undefined;
    let reloading = false;

    // Notifications in order: a READY=1 must never overtake the RELOADING=1 before it.
    let notified = Promise.resolve();
    const notify = (fields: Readonly<Record<string, string>>) => (notified = notified.then(() => notifyServiceManager(fields, logger)));

    const fork = (): Worker => {
      const worker = cluster.fork();
      const generation = current;
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'config-request') {
          const answer: PrimaryMessage = { type: 'config', file: generation.config.file, properties: [...generation.properties] };
          worker.send(answer);
        } else if (m.type === 'ready') {
          ready.set(worker, generation);
          startFailures = 0;
          const candidate = candidates.get(worker);
          if (candidate !== undefined) {
            candidates.delete(worker);
            candidate(undefined);
          } else if (announced) {
            logger.info('Replacement worker ready', { workerId: worker.id });
          } else if (ready.size === workers) {
            announced = true;
            const { api } = initial.config;
            const listening = `EKM listening on ${api.https ? 'https' : 'http'}://${api.hostname}:${api.port} with ${workers} workers`;
            logger.info(listening, { store: initial.config.store.type });
            void notify({ READY: '1', STATUS: listening });
            if (reloadSignalledAt !== undefined) void reloadWhileSignalled();
          }
        } else {
          lastStartFailure = { reason: m.reason, configError: m.configError };
        }
      });
      return worker;
    };

    const finish = (code: number) => {
      void logger.flush().finally(() => resolveExit(code));
    };

    cluster.on('exit', (worker, code, signal) => {
      const wasReady = ready.delete(worker);
      if (stopping) {
        if (Object.keys(cluster.workers ?? {}).length === 0) {
          logger.info('All workers stopped; exiting');
          finish(EXIT_OK);
        }
        return;
      }
      const how = signal ? `signal ${signal}` : `code ${code}`;
      if (retiring.delete(worker)) {
        logger.debug('Worker of the previous configuration drained and exited', { workerId: worker.id, exit: how });
        return;
      }
      const candidate = candidates.get(worker);
      if (candidate !== undefined) {
        candidates.delete(worker);
        candidate(lastStartFailure?.reason ?? `worker exited with ${how}`);
        return;
      }
      if (!wasReady) {
        startFailures++;
        const why = lastStartFailure?.reason ?? `worker exited with ${how}`;
        logger.error('Worker failed at start', { workerId: worker.id, exit: how, reason: lastStartFailure?.reason ?? 'unknown' });
        // Stopping is for a service that cannot serve at all. While other workers serve, killing
        // them would turn a failing replacement into an outage: keep them, retry with backoff.
        if (startFailures >= MAX_START_FAILURES && ready.size === 0) {
          logger.error(`Workers keep failing at start, stopping the service: ${why}`);
          stopping = true;
          for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGKILL');
          // A configuration a worker refuses is one the unit must not restart on either.
          finish(lastStartFailure?.configError === true ? EXIT_CONFIG : EXIT_FAILURE);
          return;
        }
        if (startFailures === MAX_START_FAILURES) logger.error(`Replacement workers keep failing at start; the ${ready.size} serving go on: ${why}`);
      } else {
        logger.error('Worker crashed; replacing it', { workerId: worker.id, exit: how });
      }
      const now = Date.now();
      recentCrashes.push(now);
      while (recentCrashes.length > 0 && recentCrashes[0]! < now - CRASH_WINDOW_MS) recentCrashes.shift();
      const delay = Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** (recentCrashes.length - 1));
      setTimeout(() => {
        if (!stopping) fork();
      }, delay);
    });

    /** Starts a worker of the current generation; resolves with undefined once it serves, or why it did not. */
    const startCandidate = (): Promise<string | undefined> =>
      new Promise((resolve) => {
        lastStartFailure = undefined;
        const worker = fork();
        const timer = setTimeout(() => {
          candidates.delete(worker);
          worker.kill('SIGKILL');
          resolve(`a new worker was not serving within ${RELOAD_START_TIMEOUT_MS / 1000} s`);
        }, RELOAD_START_TIMEOUT_MS);
        candidates.set(worker, (failure) => {
          clearTimeout(timer);
          resolve(failure);
        });
      });

    /** Tells a worker to go: it stops accepting at once (others serve) and drains its connections. */
    const retire = (worker: Worker) => {
      ready.delete(worker);
      retiring.add(worker);
      const shutdown: PrimaryMessage = { type: 'shutdown', drainMs: 0, serviceStopping: false };
      if (worker.isConnected()) worker.send(shutdown);
    };

    /**
     * Replaces, one at a time, every serving worker of another generation than the current one: the
     * new worker serves before the old one drains. Resolves with why a new worker did not start.
     */
    const replaceStale = async (): Promise<string | undefined> => {
      for (;;) {
        if (stopping) return 'the service is stopping';
        const stale = [...ready].find(([, generation]) => generation.id !== current.id)?.[0];
        if (stale === undefined) return undefined;
        const failure = await startCandidate();
        if (failure !== undefined) return failure;
        if (ready.has(stale)) retire(stale);
      }
    };

    const reload = async (): Promise<ReloadOutcome> => {
      let next: ReturnType<typeof prepareReload>;
      try {
        next = prepareReload(current);
      } catch (e) {
        const reason = e instanceof ConfigError ? e.message : `unexpected error: ${(e as Error).message}`;
        const message = `Reload refused, still serving with the configuration loaded before: ${reason}`;
        logger.error(message);
        return { status: e instanceof ConfigError ? EXIT_CONFIG : EXIT_FAILURE, message };
      }
      const kept = next.keptUntilRestart.length === 0 ? '' : `; kept until a restart: ${next.keptUntilRestart.join(', ')}`;
      const changes = `changed: ${next.changed.length === 0 ? 'nothing' : next.changed.join(', ')}${kept}`;
      logger.info(`Reloading ${current.config.file}: ${changes}`, { changed: next.changed, keptUntilRestart: next.keptUntilRestart });
      const previous = current;
      current = { config: next.config, properties: next.properties, id: ++generations };
      logger.setLevel(next.config.logger.level);
      const failure = await replaceStale();
      if (failure === undefined) {
        const message = `Reloaded ${current.config.file}: ${changes}`;
        logger.info(message);
        return { status: EXIT_OK, message };
      }
      // Back to the previous configuration everywhere: the workers already replaced are replaced again.
      current = previous;
      logger.setLevel(previous.config.logger.level);
      if (!stopping) await replaceStale();
      const message = `Reload failed, still serving with the configuration loaded before: a worker with the new configuration did not start: ${failure}`;
      logger.error(message);
      return { status: lastStartFailure?.configError === true ? EXIT_CONFIG : EXIT_FAILURE, message };
    };

    /** Reloads until no SIGHUP is left unanswered; each one gets a verdict for `flowcrypt-ekm --reload`. */
    const reloadWhileSignalled = async () => {
      if (reloading) return;
      reloading = true;
      while (reloadSignalledAt !== undefined && !stopping) {
        const signalledAt = reloadSignalledAt;
        reloadSignalledAt = undefined;
        void notify({ RELOADING: '1', STATUS: 'Reloading the configuration' });
        const outcome = await reload();
        void notify({ READY: '1', STATUS: outcome.message });
        await notified;
        const dir = verdictDirectory();
        if (dir !== undefined) {
          try {
            writeVerdict(dir, { pid: process.pid, signalledAt, ...outcome });
          } catch (e) {
            logger.error('Cannot write the reload verdict', { dir, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
          }
        }
      }
      reloading = false;
    };

    process.on('SIGHUP', () => {
      reloadSignalledAt = Date.now();
      // A reload before every worker serves waits for them (started then).
      if (announced) void reloadWhileSignalled();
    });

    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      const { drainMs } = current.config.api;
      logger.info(`${signal} received: ${drainMs > 0 ? `failing /health for ${drainMs / 1000} s, then ` : ''}stopping to accept, finishing in-flight requests`);
      void notify({ STOPPING: '1', STATUS: 'Stopping: finishing the requests in flight' });
      const all = Object.values(cluster.workers ?? {});
      if (all.length === 0) { finish(EXIT_OK); return; }
      const message: PrimaryMessage = { type: 'shutdown', drainMs, serviceStopping: true };
      for (const w of all) if (w?.isConnected()) w.send(message);
      setTimeout(() => {
        for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGKILL');
        logger.error('Workers did not stop in time; killed them');
        finish(EXIT_FAILURE);
      }, drainMs + SHUTDOWN_TIMEOUT_MS).unref();
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));

    const tuned = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((arg) => arg.includes('semi-space-size'));
    if (!tuned) cluster.setupPrimary({ execArgv: [...process.execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`] });
    for (let i = 0; i < workers; i++) fork();
  });
}
