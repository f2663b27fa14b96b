import { EXIT_FAILURE, EXIT_OK } from './exit-status.js';
import type { Config } from '../config/config.js';
import { audit } from '../logging/audit-trail.js';
import type { Logger } from '../logging/logger.js';
import { openStore } from '../stores/store-registry.js';
import type { RotationStep, Store } from '../stores/store.js';
import { describeFailure, PROCESS_OUTPUT, type CommandOutput } from './command-output.js';
import { ExportFileError, readPassphraseFile } from './key-export-format.js';
import { operatorFields } from './operator.js';
import { Progress } from './progress.js';

/**
 * `--rotate-store-key [--new-passphrase-file=<file>]`: has the store re-encrypt every record under
 * new keys (Store.rotateStoreKey) while the service runs, printing where it is; audited as
 * `store-key.rotate`. Interrupted, it is run again and finishes. Tells the operator which property
 * to update before the next restart. Resolves with the exit code.
 */
export async function rotateStoreKey(
  config: Config,
  logger: Logger,
  configFile: string,
  passphraseFile: string | undefined,
  io: CommandOutput = PROCESS_OUTPUT,
): Promise<number> {
  const auditLog = logger.child(operatorFields());
  const record = { event: 'store-key.rotate', email: undefined, fingerprints: [], clientAddress: undefined, userAgent: undefined } as const;
  let newSecret: string | undefined;
  try {
    newSecret = passphraseFile === undefined ? undefined : readPassphraseFile(passphraseFile);
  } catch (e) {
    if (!(e instanceof ExportFileError)) throw e;
    io.err.write(`flowcrypt-ekm: rotation not started: ${e.message}\n`);
    return EXIT_FAILURE;
  }
  if (config.store.type === 'EncryptedDbStore' && newSecret === undefined) {
    io.err.write('flowcrypt-ekm: rotation not started: EncryptedDbStore needs the new passphrase: --new-passphrase-file=<file>\n');
    return EXIT_FAILURE;
  }
  if (config.store.type === 'EncryptedDbStore' && newSecret === config.store.encryptionKey) {
    io.err.write('flowcrypt-ekm: rotation not started: the new passphrase is the one store.db.encryption.key holds now; choose a new one\n');
    return EXIT_FAILURE;
  }
  const progress = new Progress(io.err);
  let store: Store | undefined;
  try {
    store = await openStore(config.store, { logger, setup: false });
    if (store.rotateStoreKey === undefined) {
      const why =
        store.type === 'KmipStore'
          ? "its records are the key server's to protect, with the key server's own key rotation"
          : 'not available for this store in this version';
      io.err.write(`flowcrypt-ekm: ${store.type} has no --rotate-store-key: ${why}\n`);
      return EXIT_FAILURE;
    }
    const report = await store.rotateStoreKey(newSecret, (step) => {
      const line = describeStep(step);
      // Each step on its own line where nobody watches a terminal (a log, a pipe); one redrawn line on a terminal.
      if (io.err.isTTY === true) progress.update(line, step.phase !== 'records');
      else io.out.write(`${line}\n`);
    });
    progress.clear();
    audit(auditLog, { ...record, status: 200 });
    io.out.write(
      `Rotated the store key of ${store.type}: ${report.records} record${report.records === 1 ? '' : 's'} re-encrypted by this run, now under key generation ${report.generation}.\n`,
    );
    if (report.property !== undefined) {
      io.out.write(
        `The old ${report.property === 'store.db.encryption.key' ? 'passphrase' : 'key'} no longer opens the store. Running services already use the new key; ` +
          `set ${report.property} in ${configFile} (on every host) to the new value before the next restart.\n`,
      );
    }
    if (report.walCheckpointed === false)
      io.err.write('note: SQLite could not empty its write-ahead log yet (readers were busy); it will at the next checkpoint\n');
    return EXIT_OK;
  } catch (e) {
    progress.clear();
    const reason = describeFailure(e);
    audit(auditLog, { ...record, status: 0, code: (e as { code?: string }).code ?? 'ERR_ROTATION_FAILED' });
    if (reason === undefined) throw e;
    io.err.write(
      `flowcrypt-ekm: rotation stopped: ${reason}. Every key stays readable; run --rotate-store-key again (with the same new passphrase) to finish.\n`,
    );
    return EXIT_FAILURE;
  } finally {
    await store?.close();
  }
}

function describeStep(step: RotationStep): string {
  switch (step.phase) {
    case 'started':
      return `Rotation started: key generation ${step.generation}, ${step.total} records to re-encrypt`;
    case 'resumed':
      return `Rotation resumed: key generation ${step.generation}, ${step.done} of ${step.total} records re-encrypted already`;
    case 'records':
      return `Re-encrypted ${step.done} of ${step.total} records`;
    case 'waiting':
      return `Waiting ${Math.ceil((step.waitMs ?? 0) / 1000)} s for running services to take the new key`;
  }
}
