import type { Config } from '../config/config.js';
import type { Logger } from '../logging/logger.js';
import { openStore } from '../stores/store-registry.js';

/**
 * `--test-store-connection`: opens the configured store, issues one search (the probe), reports
 * the round trip latency, checks that the store can be written where it can tell, and closes, printing the steps the original prints. Resolves with the exit code.
 */
export async function testStoreConnection(config: Config, logger: Logger): Promise<number> {
  logger.info(`Registering ${config.store.type} as Store implementation`);
  logger.info('initiating test');
  try {
    const store = await openStore(config.store, { logger, setup: true });
    logger.info('store session started successfully');
    try {
      logger.info('testing store search command');
      const started = process.hrtime.bigint();
      await store.probe();
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      logger.info(`round trip latency: ${ms < 10 ? ms.toFixed(1) : Math.round(ms)}ms`, { latencyMs: ms });
      // A store that reads but cannot be written fails the check, naming why (read-only, full).
      await store.probeWrites?.();
    } finally {
      logger.info('closing session');
      await store.close();
    }
    logger.info('success');
    return 0;
  } catch (e) {
    const details = (e as { details?: string }).details;
    logger.error(`failure: ${(e as Error).message}${details ? ` (${details})` : ''}`);
    return 1;
  }
}
