import { EXIT_FAILURE } from './exit-status.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config/config.js';
import { FingerprintConflictError, KeyLimitError, KeyRejectedError } from '../errors.js';
import { checkEmailAddress, displayEmail, domainOf, type EmailCheck } from '../keys/email-address.js';
import { unusableStateOf, validatePrivateKey, type UnusableKeyState } from '../keys/private-key-policy.js';
import { audit } from '../logging/audit-trail.js';
import type { Logger } from '../logging/logger.js';
import { openStore } from '../stores/store-registry.js';
import type { Store, UpsertResult } from '../stores/store.js';
import { describeFailure, PROCESS_OUTPUT, type CommandOutput } from './command-output.js';
import { ExportFileError, parseExport, readPassphraseFile, type ExportedKey } from './key-export-format.js';
import { operatorFields } from './operator.js';
import { Progress } from './progress.js';

/** What an import did with each key of the file. */
export interface ImportReport {
  readonly added: string[];
  readonly updated: string[];
  readonly unchanged: string[];
  readonly refused: { readonly key: number; readonly email: string; readonly fingerprint: string; readonly reason: string }[];
}

/**
 * `--import=<file>`: reads a file written by `--export` (encrypted or not), validates every key as
 * PUT does (the same policy, the owner's email in a user id, the owner in `org.domains`, a claimed
 * fingerprint and public key that match), and upserts it by fingerprint within the per-user limits
 * (api.keys.max.per.user, api.keys.max.bytes.per.user: a key past them is refused with its line). Idempotent: a second run
 * reports every key unchanged. Works whatever `api.keys.provisioning` says: in the admin mode this
 * is how keys get in. Prints each refusal with its reason and a summary line; resolves with 0 when
 * every key is in the store, 1 when any was refused or the import stopped.
 */
export async function importKeys(config: Config, logger: Logger, file: string, passphraseFile: string | undefined, io: CommandOutput = PROCESS_OUTPUT): Promise<number> {
  const path = resolve(file);
  const auditLog = logger.child({ ...operatorFields(), file: path });
  let keys: readonly ExportedKey[];
  try {
    const passphrase = passphraseFile === undefined ? undefined : readPassphraseFile(passphraseFile);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      throw new ExportFileError(`Cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'unknown error'}`);
    }
    const { doc, encrypted } = parseExport(bytes, passphrase);
    if (!encrypted && passphrase !== undefined) io.err.write(`flowcrypt-ekm: ${path} is not encrypted; the passphrase was not needed\n`);
    keys = doc.keys;
  } catch (e) {
    if (!(e instanceof ExportFileError)) throw e;
    io.err.write(`flowcrypt-ekm: import failed: ${e.message}\n`);
    return EXIT_FAILURE;
  }

  const report: ImportReport = { added: [], updated: [], unchanged: [], refused: [] };
  const progress = new Progress(io.err);
  const summary = () =>
    `${keys.length} key${keys.length === 1 ? '' : 's'} in ${path}: ${report.added.length} added, ${report.updated.length} updated, ` +
    `${report.unchanged.length} unchanged, ${report.refused.length} refused`;
  let store: Store | undefined;
  try {
    // Inside the try: a store that cannot be opened (HSM or key server down) stops the import with
    // the same one-line reason as one that fails halfway.
    const opened = await openStore(config.store, { logger, setup: true });
    store = opened;
    for (const [i, entry] of keys.entries()) {
      progress.update(`Importing ${i}/${keys.length} (${Math.floor((100 * i) / keys.length)}%): ${report.added.length} added, ${report.updated.length} updated, ${report.unchanged.length} unchanged, ${report.refused.length} refused`);
      const owner = checkEmailAddress(entry.email);
      // Refused owners are reported as given, escaped (a lookalike shows as \u212A, not as its victim).
      const email = owner.email ?? displayEmail(entry.email);
      const record = { event: 'private-key.import', email, clientAddress: undefined, userAgent: undefined } as const;
      // `fingerprint`: the validated key's, once known; until then the one the file claims.
      const refuse = (reason: string, status: number, code: string, fingerprint = entry.fingerprint) => {
        report.refused.push({ key: i + 1, email, fingerprint: fingerprint ?? '', reason });
        progress.clear();
        audit(auditLog, { ...record, fingerprints: fingerprint === undefined ? [] : [fingerprint], status, code });
        io.out.write(`refused: key #${i + 1} ${email} ${fingerprint ?? '(no fingerprint)'}: ${reason}\n`);
      };
      const ownerRefusal = checkOwner(owner, config.org.domains);
      if (ownerRefusal !== undefined) {
        refuse(ownerRefusal.reason, ownerRefusal.status, ownerRefusal.code);
        continue;
      }
      let result: UpsertResult;
      let fingerprint: string | undefined;
      let keyState: UnusableKeyState | undefined;
      try {
        // A revoked or expired key is imported only as an update of one the owner already holds.
        const held = async () => (await opened.listByEmail(email)).map((k) => k.fingerprint);
        const key = await validatePrivateKey(entry.privateKey, email, { fingerprint: entry.fingerprint, publicKey: entry.publicKey }, new Date(), held);
        fingerprint = key.fingerprint;
        keyState = unusableStateOf(key);
        result = await opened.upsert(key, config.api.keyLimits);
      } catch (e) {
        if (e instanceof KeyRejectedError || e instanceof KeyLimitError) {
          refuse(describeFailure(e)!, e.status, e.code, fingerprint);
          continue;
        }
        if (e instanceof FingerprintConflictError) {
          refuse('this fingerprint is already stored for another user', e.status, e.code);
          continue;
        }
        throw e;
      }
      report[result].push(fingerprint);
      progress.clear();
      audit(auditLog, { ...record, fingerprints: [fingerprint], status: 200, change: result, keyState });
    }
  } catch (e) {
    progress.clear();
    const reason = describeFailure(e);
    logger.error('Import stopped', { file: path, ...counts(report), reason: reason ?? 'unexpected error' });
    if (reason === undefined) throw e;
    io.out.write(`Import stopped: ${summary()}\n`);
    io.err.write(`flowcrypt-ekm: import stopped: ${reason}. Keys already imported stay; run the import again when the store is back.\n`);
    return EXIT_FAILURE;
  } finally {
    await store?.close();
  }
  progress.clear();
  logger.info('Import finished', { file: path, ...counts(report) });
  io.out.write(`Imported ${summary()}\n`);
  return report.refused.length === 0 ? 0 : 1;
}

/** Why an owner cannot have keys here, with what PUT would answer (400, or 403 from SimpleAcl); undefined when they can. */
function checkOwner(owner: EmailCheck, domains: readonly string[] | undefined): { reason: string; status: number; code: string } | undefined {
  if (owner.email === undefined) return { reason: `the email cannot be an identity: it ${owner.refusal}`, status: 400, code: 'ERR_BAD_EMAIL' };
  const domain = domainOf(owner.email);
  if (domains !== undefined && !domains.includes(domain)) {
    return { reason: `${domain} is not one of the domains this key manager serves (org.domains)`, status: 403, code: 'ERR_FORBIDDEN' };
  }
  return undefined;
}

function counts(report: ImportReport) {
  return { added: report.added.length, updated: report.updated.length, unchanged: report.unchanged.length, refused: report.refused.length };
}
