import { EXIT_FAILURE, EXIT_OK } from './exit-status.js';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Config } from '../config/config.js';
import { checkEmailAddress, displayEmail } from '../keys/email-address.js';
import { audit } from '../logging/audit-trail.js';
import type { Logger } from '../logging/logger.js';
import { openStore } from '../stores/store-registry.js';
import type { Store, StoredKey } from '../stores/store.js';
import { describeFailure, PROCESS_OUTPUT, type CommandOutput } from './command-output.js';
import { operatorFields } from './operator.js';

/** What `--delete=` names: one key by fingerprint, or every key of some users. */
export type DeleteTarget =
  { readonly fingerprint: string; readonly emails?: undefined } | { readonly emails: readonly string[]; readonly fingerprint?: undefined };

/** A file of emails larger than this is refused unread: a million addresses is about 30 MB. */
const MAX_EMAIL_FILE_BYTES = 32 * 1024 * 1024;
/** A v4 (40 hex) or v6 (64 hex) fingerprint, as --list prints it; spaces allowed, as gpg prints it. */
const FINGERPRINT = /^(?:[0-9A-F]{40}|[0-9A-F]{64})$/;

/** Why `--delete=` cannot be understood, in one line. */
export class DeleteTargetError extends Error {
  override readonly name = 'DeleteTargetError';
}

/**
 * Reads `--delete=<value>`: a fingerprint (40 or 64 hex digits), else an email (has an `@` and no
 * `/`), else a file of emails, one a line (blank lines and `#` comments skipped). Every email must
 * pass the one email rule (keys/email-address.ts); a file with one bad line is refused whole,
 * before anything is removed.
 */
export function parseDeleteTarget(value: string): DeleteTarget {
  const hex = value.replace(/\s/g, '').toUpperCase();
  if (FINGERPRINT.test(hex)) return { fingerprint: hex };
  if (value.includes('@') && !value.includes('/')) return { emails: [checkedEmail(value, `--delete=${displayEmail(value)}`)] };
  const path = resolve(value);
  let text: string;
  try {
    if (statSync(path).size > MAX_EMAIL_FILE_BYTES) throw new DeleteTargetError(`${path} is larger than ${MAX_EMAIL_FILE_BYTES} bytes; split it`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof DeleteTargetError) throw e;
    throw new DeleteTargetError(
      `--delete=${displayEmail(value)} is neither a fingerprint nor an email, and not a readable file of emails (${(e as NodeJS.ErrnoException).code ?? 'unknown error'})`,
    );
  }
  const emails = new Set<string>();
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    const entry = line.trim();
    if (entry === '' || entry.startsWith('#')) continue;
    emails.add(checkedEmail(entry, `${path} line ${i + 1}`));
  }
  if (emails.size === 0) throw new DeleteTargetError(`${path} names no email`);
  return { emails: [...emails] };
}

function checkedEmail(raw: string, where: string): string {
  const check = checkEmailAddress(raw);
  if (check.email === undefined) throw new DeleteTargetError(`${where}: not an email this key manager accepts: it ${check.refusal}`);
  return check.email;
}

/** Asks the operator a yes/no question; undefined when nobody can answer (stdin is not a terminal). */
export type Confirm = ((question: string) => Promise<boolean>) | undefined;

function terminalConfirm(): Confirm {
  if (!process.stdin.isTTY) return undefined;
  return async (question) => {
    const prompt = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return /^y(es)?$/i.test((await prompt.question(question)).trim());
    } finally {
      prompt.close();
    }
  };
}

/**
 * `--delete=<email|fingerprint|file of emails>`: shows the keys it would remove, asks on a
 * terminal (`yes` skips the question; without a terminal it is required), removes them one by one,
 * printing and auditing each (`private-key.delete`, with the operator's local user and host).
 * Resolves 0 when it removed anything and nothing failed, 1 with a one-line reason when there was
 * nothing to remove, the operator declined, or the store failed (what was removed stays removed).
 */
export async function deleteKeys(
  config: Config,
  logger: Logger,
  value: string,
  yes: boolean,
  io: CommandOutput = PROCESS_OUTPUT,
  confirm: Confirm = terminalConfirm(),
): Promise<number> {
  let target: DeleteTarget;
  try {
    target = parseDeleteTarget(value);
  } catch (e) {
    if (!(e instanceof DeleteTargetError)) throw e;
    io.err.write(`flowcrypt-ekm: ${e.message}\n`);
    return EXIT_FAILURE;
  }
  const auditLog = logger.child(operatorFields());
  const removed: StoredKey[] = [];
  let store: Store | undefined;
  try {
    store = await openStore(config.store, { logger, setup: false });
    const { found, missing } = await findTargets(store, target);
    if (found.length === 0) {
      io.err.write(`flowcrypt-ekm: nothing to remove: ${describeMissing(target)}\n`);
      return EXIT_FAILURE;
    }
    const users = new Set(found.map((k) => k.email)).size;
    io.out.write(`${found.length} key${found.length === 1 ? '' : 's'} of ${users} user${users === 1 ? '' : 's'} to remove from ${config.store.type}:\n`);
    for (const key of found) io.out.write(`  ${key.email} ${key.fingerprint}\n`);
    for (const email of missing) io.err.write(`no key stored for ${email}\n`);
    if (!yes) {
      if (confirm === undefined) {
        io.err.write('flowcrypt-ekm: nothing removed: stdin is not a terminal to confirm on; add --yes to remove without asking\n');
        return EXIT_FAILURE;
      }
      if (!(await confirm('Remove these keys? The apps of these users lose them at their next refresh. [y/N] '))) {
        io.err.write('flowcrypt-ekm: nothing removed\n');
        return EXIT_FAILURE;
      }
    }
    for (const key of found) {
      const record = {
        event: 'private-key.delete',
        email: key.email,
        fingerprints: [key.fingerprint],
        clientAddress: undefined,
        userAgent: undefined,
      } as const;
      try {
        if (!(await store.delete(key.email, key.fingerprint))) {
          // Removed by someone else since it was found: nothing of ours to report as removed.
          audit(auditLog, { ...record, status: 404, code: 'ERR_KEY_NOT_FOUND' });
          io.out.write(`already gone: ${key.email} ${key.fingerprint}\n`);
          continue;
        }
      } catch (e) {
        audit(auditLog, { ...record, status: 0, code: (e as { code?: string }).code ?? 'ERR_DELETE_FAILED' });
        throw e;
      }
      audit(auditLog, { ...record, status: 200 });
      removed.push(key);
      io.out.write(`removed: ${key.email} ${key.fingerprint}\n`);
    }
  } catch (e) {
    const reason = describeFailure(e);
    if (reason === undefined) throw e;
    io.err.write(`flowcrypt-ekm: delete stopped after removing ${removed.length} key${removed.length === 1 ? '' : 's'}: ${reason}\n`);
    return EXIT_FAILURE;
  } finally {
    await store?.close();
  }
  const users = new Set(removed.map((k) => k.email)).size;
  io.out.write(`Removed ${removed.length} key${removed.length === 1 ? '' : 's'} of ${users} user${users === 1 ? '' : 's'} from ${config.store.type}\n`);
  if (removed.length === 0) {
    io.err.write('flowcrypt-ekm: nothing removed: every key was removed by someone else meanwhile\n');
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

/** The stored keys the target names, and the emails of a file that hold none. */
async function findTargets(store: Store, target: DeleteTarget): Promise<{ found: StoredKey[]; missing: string[] }> {
  if (target.fingerprint !== undefined) {
    // A fingerprint names at most one key (stores refuse a second owner); its owner is in the record.
    // The key id index also answers to subkey fingerprints: only the key's own counts here.
    return { found: (await store.listByKeyId(target.fingerprint)).filter((k) => k.fingerprint === target.fingerprint), missing: [] };
  }
  const found: StoredKey[] = [];
  const missing: string[] = [];
  for (const email of target.emails) {
    const keys = await store.listByEmail(email);
    if (keys.length === 0) missing.push(email);
    found.push(...keys);
  }
  return { found, missing };
}

function describeMissing(target: DeleteTarget): string {
  if (target.fingerprint !== undefined) return `no key with the fingerprint ${target.fingerprint} is stored`;
  if (target.emails.length === 1) return `no key is stored for ${target.emails[0]!}`;
  return `none of the ${target.emails.length} emails has a key stored`;
}
