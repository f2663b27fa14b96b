import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config/config.js';
import type { Logger } from '../logging/logger.js';
import type { WorkerMessage } from './messages.js';

/** Workers that die before they are ready this many times in a row stop the service, unless others serve. */
const MAX_START_FAILURES = 3;
/** Replacing crashed workers waits 100 ms, doubling per recent crash, up to this. */
const MAX_RESTART_DELAY_MS = 30_000;
const CRASH_WINDOW_MS = 60_000;
/** Workers still running this long after a shutdown request are killed. */
const SHUTDOWN_TIMEOUT_MS = 30_000;
/**
 * V8's young generation, per semi-space, in the workers. Under load V8 grows it to its 64-bit
 * default (16 MB on Node.js 20, 32 MB on 24; three semi-spaces resident), which took workers from about 90 MB to 130-150 MB
 * RSS; at 8 MB they stay near 105 MB with no CPU difference the benchmark could measure (requests
 * allocate little that outlives them). An operator's own setting (NODE_OPTIONS or the command line)
 * is left alone.
 */
const WORKER_SEMI_SPACE_MB = 8;

/**
 * The primary: forks `api.workers` workers, replaces crashed ones with backoff, stops with the
 * reason when workers keep failing at start and none serves, and on SIGTERM lets every worker drain and exits 0.
 * Resolves with the process exit code.
 */
export function runPrimary(config: Config, logger: Logger): Promise<number> {
  return new Promise((resolveExit) => {
    const ready = new Set<Worker>();
    const recentCrashes: number[] = [];
    let startFailures = 0;
    let lastStartFailure = '';
    let stopping = false;
    let announced = false;

    const fork = () => {
      const worker = cluster.fork();
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') {
          ready.add(worker);
          startFailures = 0;
          if (announced) logger.info('Replacement worker ready', { workerId: worker.id });
          if (!announced && ready.size === config.api.workers) {
            announced = true;
            const scheme = config.api.https ? 'https' : 'http';
            logger.info(`EKM listening on ${scheme}://${config.api.hostname}:${config.api.port} with ${config.api.workers} workers`, {
              store: config.store.type,
            });
          }
        } else {
          lastStartFailure = m.reason;
        }
      });
    };

    const finish = (code: number) => {
      void logger.flush().finally(() => resolveExit(code));
    };

    cluster.on('exit', (worker, code, signal) => {
      const wasReady = ready.delete(worker);
      if (stopping) {
        if (Object.keys(cluster.workers ?? {}).length === 0) {
          logger.info('All workers stopped; exiting');
          finish(0);
        }
        return;
      }
      const how = signal ? `signal ${signal}` : `code ${code}`;
      if (!wasReady) {
        startFailures++;
        logger.error('Worker failed at start', { workerId: worker.id, exit: how, reason: lastStartFailure || 'unknown' });
        // Stopping is for a service that cannot serve at all. While other workers serve, killing
        // them would turn a failing replacement into an outage: keep them, retry with backoff.
        const why = lastStartFailure || `worker exited with ${how}`;
        if (startFailures >= MAX_START_FAILURES && ready.size === 0) {
          logger.error(`Workers keep failing at start, stopping the service: ${why}`);
          stopping = true;
          for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGKILL');
          finish(1);
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

    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal} received: stopping to accept, finishing in-flight requests`);
      const workers = Object.values(cluster.workers ?? {});
      if (workers.length === 0) {
        finish(0);
        return;
      }
      for (const w of workers) if (w?.isConnected()) w.send({ type: 'shutdown' });
      setTimeout(() => {
        for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGKILL');
        logger.error('Workers did not stop in time; killed them');
        finish(1);
      }, SHUTDOWN_TIMEOUT_MS).unref();
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));

    const tuned = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((arg) => arg.includes('semi-space-size'));
    if (!tuned) cluster.setupPrimary({ execArgv: [...process.execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`] });
    for (let i = 0; i < config.api.workers; i++) fork();
  });
}
