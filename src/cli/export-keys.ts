import { EXIT_FAILURE, EXIT_OK } from './exit-status.js';
import { closeSync, fchmodSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config/config.js';
import { audit } from '../logging/audit-trail.js';
import type { Logger } from '../logging/logger.js';
import { openStore } from '../stores/store-registry.js';
import { describeFailure, PROCESS_OUTPUT, type CommandOutput } from './command-output.js';
import { ExportFileError, exportedKey, FORMAT_VERSION, PLAIN_FORMAT, readPassphraseFile, serializeExport, type ExportedKey } from './key-export-format.js';
import { operatorFields } from './operator.js';
import { Progress } from './progress.js';

/**
 * `--export=<file>`: writes every stored key to a new file (mode 0600; an existing file is never
 * overwritten), optionally encrypted to the passphrase in `passphraseFile`. The file is the one
 * place decrypted keys leave the store, by the operator's request; an audit entry per user records it.
 * Resolves with the exit code.
 */
export async function exportKeys(config: Config, logger: Logger, file: string, passphraseFile: string | undefined, io: CommandOutput = PROCESS_OUTPUT): Promise<number> {
  const path = resolve(file);
  const auditLog = logger.child({ ...operatorFields(), file: path, encrypted: passphraseFile !== undefined });
  let fd: number;
  let passphrase: string | undefined;
  try {
    passphrase = passphraseFile === undefined ? undefined : readPassphraseFile(passphraseFile);
    fd = createExclusive(path);
  } catch (e) {
    if (!(e instanceof ExportFileError)) throw e;
    io.err.write(`flowcrypt-ekm: export failed: ${e.message}\n`);
    return EXIT_FAILURE;
  }
  io.err.write(
    passphrase === undefined
      ? `WARNING: ${path} will hold the decrypted private keys of every user, unencrypted. Keep it safe and delete it when done, or export with --export-passphrase-file.\n`
      : `WARNING: ${path} will hold the private keys of every user, encrypted to the passphrase: anyone with the file and the passphrase can read them all.\n`,
  );
  const progress = new Progress(io.err);
  const keys: ExportedKey[] = [];
  try {
    const store = await openStore(config.store, { logger, setup: false });
    try {
      for await (const key of store.all()) {
        keys.push(exportedKey(key));
        progress.update(`Exporting keys: ${keys.length}`);
      }
    } finally {
      await store.close();
    }
    progress.update(`Exporting keys: ${keys.length}`, true);
    const bytes = serializeExport({ format: PLAIN_FORMAT, version: FORMAT_VERSION, exportedAt: new Date().toISOString(), orgId: config.org.id, store: config.store.type, keys }, passphrase);
    writeAll(fd, bytes);
    bytes.fill(0);
    fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    progress.clear();
    closeSync(fd);
    unlinkSync(path);
    const reason = describeFailure(e);
    audit(auditLog, { event: 'private-key.export', email: undefined, fingerprints: [], clientAddress: undefined, userAgent: undefined, status: 0, code: 'ERR_EXPORT_FAILED' });
    if (reason === undefined) throw e;
    io.err.write(`flowcrypt-ekm: export failed, ${path} removed: ${reason}\n`);
    return EXIT_FAILURE;
  }
  progress.clear();
  // One audit entry per user whose keys are now in the file.
  const byUser = new Map<string, string[]>();
  for (const key of keys) byUser.set(key.email, [...(byUser.get(key.email) ?? []), key.fingerprint ?? '']);
  for (const [email, fingerprints] of byUser) {
    audit(auditLog, { event: 'private-key.export', email, fingerprints, clientAddress: undefined, userAgent: undefined, status: 200 });
  }
  const users = byUser.size;
  io.out.write(`Exported ${keys.length} key${keys.length === 1 ? '' : 's'} of ${users} user${users === 1 ? '' : 's'} from ${config.store.type} to ${path}${passphrase === undefined ? ' (not encrypted)' : ' (encrypted)'}\n`);
  return EXIT_OK;
}

/** O_CREAT|O_EXCL: refuses an existing file or symlink, so nothing is overwritten or redirected. */
function createExclusive(path: string): number {
  try {
    const fd = openSync(path, 'wx', 0o600);
    // The umask may only narrow the mode; set it exactly.
    fchmodSync(fd, 0o600);
    return fd;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new ExportFileError(`${path} already exists; refusing to overwrite it. Choose a new file name.`);
    throw new ExportFileError(`Cannot create ${path}: ${code ?? 'unknown error'}`);
  }
}

function writeAll(fd: number, bytes: Buffer): void {
  let offset = 0;
  while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
}
