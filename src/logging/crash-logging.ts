import type { Logger } from './logger.js';

/** How long a crashing process waits for its log outputs before it exits. */
const CRASH_FLUSH_TIMEOUT_MS = 5000;

/**
 * Logs an uncaught exception or unhandled rejection at error, with its stack (server side only),
 * waits for the outputs (bounded) and exits 1, as Node would have, but without losing the entry
 * that says why. In a worker, the primary then logs the crash and replaces the worker.
 */
export function logCrashes(logger: Logger, exit: (code: number) => void = (code) => process.exit(code)): void {
  let crashing = false;
  const crash = (kind: string, error: unknown): void => {
    if (crashing) return;
    crashing = true;
    const fields = error instanceof Error
      ? { error: error.name, stack: error.stack ?? error.message }
      : { error: typeof error, stack: String(error).slice(0, 2000) };
    logger.error(`${kind}; the process exits`, fields);
    const timer = setTimeout(() => exit(1), CRASH_FLUSH_TIMEOUT_MS);
    void logger.flush().finally(() => {
      clearTimeout(timer);
      exit(1);
    });
  };
  process.on('uncaughtException', (error) => crash('Uncaught exception', error));
  process.on('unhandledRejection', (reason) => crash('Unhandled promise rejection', reason));
}
