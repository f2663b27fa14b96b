import type { Config } from '../config/config.js';
import type { Logger } from '../logging/logger.js';
import { openStore } from '../stores/store-registry.js';
import { EXIT_OK, failureStatus } from './exit-status.js';
import { findMisownedKeys } from './stored-owner-check.js';

/** Misowned keys listed one per line; beyond this, only their number. */
const MAX_LISTED = 50;

/**
 * `--test-store-connection`: opens the configured store, issues one search (the probe), reports
 * the round trip latency, checks that the store can be written where it can tell, and closes,
 * printing the steps docs/operator-guide.md lists (the earlier Java product's). Then it reads every
 * stored key's owner and user ids and warns about keys the email rule would not file under their
 * owner (stored before the rule): a warning for the operator, not a failure, so the exit code
 * stays 0 unless the store failed. Resolves with the exit status (src/cli/exit-status.ts).
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
      logger.info('checking the owner email of every stored key');
      const { checked, misowned } = await findMisownedKeys(store);
      if (misowned.length === 0) {
        logger.info(`${checked} stored keys, every owner email acceptable`);
      } else {
        logger.warn(
          `${misowned.length} of ${checked} stored keys were stored before the email rule and do not pass it: ` +
            'they may be served to a user they do not belong to, or to nobody; check each with its owner',
          { misowned: misowned.length, checked },
        );
        for (const k of misowned.slice(0, MAX_LISTED)) logger.warn(`key ${k.fingerprint} of ${k.email}: ${k.reason}`);
        if (misowned.length > MAX_LISTED) logger.warn(`... and ${misowned.length - MAX_LISTED} more`);
      }
    } finally {
      logger.info('closing session');
      await store.close();
    }
    logger.info('success');
    return EXIT_OK;
  } catch (e) {
    const details = (e as { details?: string }).details;
    logger.error(`failure: ${(e as Error).message}${details ? ` (${details})` : ''}`);
    // 78 for a configuration error (a wrong PIN or passphrase, a missing module), 1 for an outage.
    return failureStatus(e);
  }
}
