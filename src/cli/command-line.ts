import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { parseArguments, USAGE, UsageError } from './arguments.js';
import { exportKeys } from './export-keys.js';
import { importKeys } from './import-keys.js';
import { serve } from './serve.js';
import { testStoreConnection } from './test-store-connection.js';
import { loadConfig, resolveConfigFile } from '../config/load-config.js';
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
  const config = loadConfig(resolveConfigFile(args.configFile));
  // A worker writes its log lines once per event-loop turn: two per key fetch, each a system call.
  const logger = createLogger(config.logger, { batchStdout: cluster.isWorker });
  logCrashes(logger);
  try {
    switch (args.command) {
      case 'serve':
        return await serve(config, logger);
      case 'test-store-connection':
        return await testStoreConnection(config, logger);
      case 'export':
        return await exportKeys(config, logger, args.file!, args.passphraseFile);
      case 'import':
        return await importKeys(config, logger, args.file!, args.passphraseFile);
    }
  } finally {
    // Remote outputs deliver in the background: an --export or --import must not exit before its
    // audit entries are out (or reported lost). A second flush, after serve's own, does nothing.
    await logger.flush();
  }
}

/** Runs the command `argv` names and exits with its status; a usage or config error is one line on stderr. */
export function runCommandLine(argv: readonly string[]): void {
  main(argv).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        process.stderr.write(`flowcrypt-ekm: ${e.message}\n\n${USAGE}`);
        process.exit(2);
      }
      if (e instanceof ConfigError) {
        process.stderr.write(`flowcrypt-ekm: ${e.message}\n`);
        process.exit(1);
      }
      process.stderr.write(`flowcrypt-ekm: unexpected error: ${(e as Partial<Error> | null | undefined)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
