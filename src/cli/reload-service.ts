import type { Config } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { readVerdict, verdictDirectory } from '../cluster/reload-verdict.js';
import { loadKeystore } from '../tls/pkcs12.js';
import { PROCESS_OUTPUT, type CommandOutput } from './command-output.js';
import { EXIT_CONFIG, EXIT_FAILURE } from './exit-status.js';

/** How long the primary may take to validate and replace every worker. */
const VERDICT_TIMEOUT_MS = 120_000;
const POLL_INTERVAL_MS = 100;

/**
 * `--reload`, the unit's ExecReload: the config file was validated on the way here (a ConfigError
 * exits 78 before this runs); the HTTPS keystore is opened too. Then SIGHUP to the primary, and
 * wait for its verdict (src/cluster/reload-verdict.ts): it validates again against what it runs,
 * keeps the old configuration when the new one fails, and says which properties need a restart.
 * Resolves with the exit status systemctl reload reports: 0, 78 refused, 1 failed.
 */
export async function reloadService(config: Config, pid: number | undefined, io: CommandOutput = PROCESS_OUTPUT): Promise<number> {
  if (config.api.https) loadKeystore(config.api.https);
  const primary = pid ?? Number(process.env.MAINPID ?? Number.NaN);
  if (!Number.isInteger(primary) || primary <= 0) {
    throw new ConfigError('--reload needs the process id of the running service: --reload=<pid>, or $MAINPID as systemctl reload sets it');
  }
  const dir = verdictDirectory();
  if (dir === undefined) {
    throw new ConfigError('--reload reads the outcome from $RUNTIME_DIRECTORY, which systemd sets (RuntimeDirectory=); without it, send SIGHUP and read the log');
  }
  const since = Date.now();
  try {
    process.kill(primary, 'SIGHUP');
  } catch (e) {
    io.err.write(`flowcrypt-ekm: reload failed: cannot signal process ${primary} (${(e as NodeJS.ErrnoException).code})\n`);
    return EXIT_FAILURE;
  }
  const deadline = since + VERDICT_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const verdict = readVerdict(dir, primary, since);
    if (verdict !== undefined) {
      // The operator's answer, whatever logger.default.level says (as the other commands' reports).
      (verdict.status === 0 ? io.out : io.err).write(`flowcrypt-ekm: ${verdict.message}\n`);
      return verdict.status === 0 || verdict.status === EXIT_CONFIG ? verdict.status : EXIT_FAILURE;
    }
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  io.err.write(`flowcrypt-ekm: reload failed: no outcome from process ${primary} within ${VERDICT_TIMEOUT_MS / 1000} s\n`);
  return EXIT_FAILURE;
}
