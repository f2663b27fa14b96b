import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArguments, USAGE, UsageError } from './arguments.js';
import { deleteKeys } from './delete-keys.js';
import { EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE } from './exit-status.js';
import { exportKeys } from './export-keys.js';
import { importKeys } from './import-keys.js';
import { listKeys } from './list-keys.js';
import { rotateStoreKey } from './rotate-store-key.js';
import { reloadService } from './reload-service.js';
import { serve } from './serve.js';
import { testStoreConnection } from './test-store-connection.js';
import { configFromProperties, readConfigFile, resolveConfigFile } from '../config/load-config.js';
import type { RunningConfig } from '../config/reload-config.js';
import { configFromPrimary } from '../cluster/worker-config.js';
import { ConfigError } from '../errors.js';
import { createLogger } from '../logging/create-logger.js';
import { logCrashes } from '../logging/crash-logging.js';

/** The `flowcrypt-ekm` command: parse the arguments, load the config, run one command. */
async function main(argv: readonly string[]): Promise<number> {
  const args = parseArguments(argv);
  if (args.command === 'version') {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`flowcrypt-ekm ${pkg.version}\n`);
    return 0;
  }
  if (args.command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const configFile = resolveConfigFile(args.configFile);
  // A worker serves what its primary validated (and, after a reload, kept), never the file as it is now.
  const running = cluster.isWorker ? await configFromPrimary() : loadRunningConfig(configFile);
  const { config } = running;
  // A worker writes its log lines once per event-loop turn: two per key fetch, each a system call.
  // --list and --delete print their report on stdout (--list --format=json | jq): logs go to stderr.
  const logger = createLogger(config.logger, { batchStdout: cluster.isWorker, logToStderr: args.command === 'list' || args.command === 'delete' });
  logCrashes(logger);
  try {
    switch (args.command) {
      case 'serve':
        return await serve(running, logger);
      case 'reload':
        return await reloadService(config, args.pid);
      case 'test-store-connection':
        return await testStoreConnection(config, logger);
      case 'export':
        return await exportKeys(config, logger, args.file!, args.passphraseFile);
      case 'import':
        return await importKeys(config, logger, args.file!, args.passphraseFile);
      case 'list':
        return await listKeys(config, logger, args.format);
      case 'delete':
        return await deleteKeys(config, logger, args.file!, args.yes);
      case 'rotate-store-key':
        return await rotateStoreKey(config, logger, configFile, args.passphraseFile);
    }
  } finally {
    // Remote outputs deliver in the background: an --export or --import must not exit before its
    // audit entries are out (or reported lost). A second flush, after serve's own, does nothing.
    await logger.flush();
  }
}

function loadRunningConfig(file: string): RunningConfig {
  const properties = readConfigFile(file);
  return { config: configFromProperties(properties, resolve(file)), properties };
}

/** Runs the command `argv` names and exits with its status (src/cli/exit-status.ts); a usage or config error is one line on stderr. */
export function runCommandLine(argv: readonly string[]): void {
  main(argv).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        process.stderr.write(`flowcrypt-ekm: ${e.message}\n\n${USAGE}`);
        process.exit(EXIT_USAGE);
      }
      if (e instanceof ConfigError) {
        process.stderr.write(`flowcrypt-ekm: ${e.message}\n`);
        process.exit(EXIT_CONFIG);
      }
      process.stderr.write(`flowcrypt-ekm: unexpected error: ${(e as Partial<Error> | null | undefined)?.stack ?? String(e)}\n`);
      process.exit(EXIT_FAILURE);
    },
  );
}
