import cluster from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { ACLS } from '../acl/acl-registry.js';
import { AUTHENTICATORS } from '../auth/authenticator-registry.js';
import { createOutboundFetch } from '../auth/outbound-fetch.js';
import type { Config } from '../config/config.js';
import { StoreUnavailableError } from '../errors.js';
import { createApp } from '../http/app.js';
import { createHttpServer } from '../http/http-server.js';
import { keyVerificationPool } from '../keys/key-verification-pool.js';
import type { Logger } from '../logging/logger.js';
import { answerMetricsRequests } from '../metrics/cluster-metrics.js';
import { measuredAuthenticator } from '../metrics/measured-authenticator.js';
import { MeasuredStore } from '../metrics/measured-store.js';
import { ReopeningStore } from '../stores/reopening-store.js';
import type { Store } from '../stores/store.js';
import { openStore } from '../stores/store-registry.js';
import { loadKeystore } from '../tls/pkcs12.js';
import type { PrimaryMessage, WorkerMessage } from './messages.js';
import { koaListener } from '../http/koa-listener.js';

/** How long in-flight requests may take to finish after a shutdown request. */
const DRAIN_TIMEOUT_MS = 20_000;
/** How long closing the store may take before the worker exits anyway (the primary kills at 30 s). */
const STORE_CLOSE_TIMEOUT_MS = 5_000;

/**
 * A worker: opens the store, builds the Koa app and serves it on the shared port until told to
 * stop (SIGTERM, or a shutdown message from the primary), then finishes in-flight requests and exits 0.
 */
export async function runWorker(config: Config, logger: Logger): Promise<void> {
  const send = (message: WorkerMessage) => process.send?.(message);
  // Listen for the stop request from the very start: one that arrives while the worker is still
  // starting is carried out as soon as it serves, never lost.
  let stop: () => void = () => {
    stopRequested = true;
  };
  // Widened: the signal handler above sets it, which the compiler's narrowing of a `let` cannot see.
  let stopRequested = false as boolean;
  process.on('SIGTERM', () => stop());
  process.on('SIGINT', () => stop());
  process.on('message', (m: PrimaryMessage | null) => {
    if (m?.type === 'shutdown') stop();
  });
  cluster.worker?.on('disconnect', () => stop());
  answerMetricsRequests();
  try {
    const store = new MeasuredStore(await openWorkerStore(config, logger));
    const app = createApp({
      config,
      logger,
      store,
      authenticator: measuredAuthenticator(AUTHENTICATORS[config.auth.type](config.auth, { logger, fetch: createOutboundFetch(process.env) })),
      acl: ACLS[config.acl.type](config),
    });
    const server = createHttpServer(koaListener(app), config.api.https ? { ...loadKeystore(config.api.https), minVersion: 'TLSv1.2' } : undefined);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.api.port, config.api.hostname, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    logger.debug('Worker listening', { address: address.address, port: address.port });
    send({ type: 'ready' });

    let stopping = false;
    stop = () => {
      if (stopping) return;
      stopping = true;
      logger.debug('Worker stopping: finishing in-flight requests');
      const force = setTimeout(() => {
        logger.warn('Requests still in flight after the drain timeout; closing them');
        server.closeAllConnections();
      }, DRAIN_TIMEOUT_MS);
      force.unref();
      server.close(() => {
        const closing = Promise.race([Promise.all([store.close(), keyVerificationPool.close()]), new Promise((r) => setTimeout(r, STORE_CLOSE_TIMEOUT_MS).unref())]);
        void closing.finally(() => logger.flush().finally(() => process.exit(0)));
      });
      server.closeIdleConnections();
    };
    if (stopRequested) stop();
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    send({ type: 'fatal', reason });
    logger.error('Worker failed to start', { reason });
    await logger.flush();
    process.exit(1);
  }
}

/**
 * The store, or, while its backend is unreachable, a ReopeningStore answering 503 until it is back:
 * an outage is not a start failure, or the primary would stop the service over it. A store that
 * opens but cannot be written serves reads (see EncryptedDbStore).
 */
async function openWorkerStore(config: Config, logger: Logger): Promise<Store> {
  const open = () => openStore(config.store, { logger, setup: false });
  try {
    return await open();
  } catch (e) {
    if (!(e instanceof StoreUnavailableError)) throw e;
    logger.warn('The store is unavailable; serving 503s until it is back', { details: e.details });
    return new ReopeningStore(config.store.type, open, e);
  }
}
