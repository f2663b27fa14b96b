import cluster from 'node:cluster';
import type { RunningConfig } from '../config/reload-config.js';
import { ConfigError, StoreReadOnlyError, StoreUnavailableError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { runPrimary } from '../cluster/primary.js';
import { startMetricsServer } from '../metrics/metrics-server.js';
import type { Store } from '../stores/store.js';
import { openStore, startStoreHost } from '../stores/store-registry.js';
import { loadKeystore, loadTruststore } from '../tls/pkcs12.js';

/**
 * Starts the service. In the primary: check what can be checked before forking (keystores and their
 * passwords, the store's own settings such as a database passphrase), then fork the workers. In a
 * worker: serve, with the configuration the primary hands it. Resolves with the exit status.
 */
export async function serve(running: RunningConfig, logger: Logger): Promise<number> {
  const { config } = running;
  if (cluster.isWorker) {
    // Loaded here, not at the top: the HTTP stack, OpenPGP and jose are the workers' alone, and
    // the primary forks sooner without them (part of being ready within 1.5 s of start).
    const { runWorker } = await import('../cluster/worker.js');
    await runWorker(config, logger);
    return new Promise(() => {});
  }
  for (const warning of config.warnings) logger.warn(warning);
  if (config.api.https) loadKeystore(config.api.https);
  if (config.truststore) loadTruststore(config.truststore);
  // The host first: for Pkcs11Store the probe below then shares its session instead of opening,
  // logging in to and closing a second one at every start.
  const host = await startStoreHost(config.store, logger);
  try {
    try {
      const store = await openStore(config.store, { logger, setup: false });
      await checkStore(store, logger).finally(() => store.close());
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      if (!(e instanceof StoreUnavailableError)) throw e;
      // An outage is not a misconfiguration: serve, and let /health say 503 until the store is back.
      logger.warn('The store is unavailable at start; serving anyway, /health answers 503 until it is back', { details: e.details });
    }
    // Before the workers: the listener counts worker restarts from the first fork on.
    await startMetricsServer(config, logger);
    return await runPrimary(running, logger);
  } finally {
    await host?.close();
  }
}

/** Reads once; a store that can be read but not written is served, with the cause in the log. */
async function checkStore(store: Store, logger: Logger): Promise<void> {
  await store.probe();
  try {
    await store.probeWrites?.();
  } catch (e) {
    if (!(e instanceof StoreReadOnlyError)) throw e;
    logger.warn(`${e.message}: ${e.details}; serving reads, writes answer 503 until they work again`, { code: e.code });
  }
}
