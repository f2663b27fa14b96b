import { EXIT_FAILURE, EXIT_OK } from './exit-status.js';
import type { Config } from '../config/config.js';
import { displayEmail } from '../keys/email-address.js';
import { describeKey, type KeyDescription } from '../keys/key-description.js';
import type { Logger } from '../logging/logger.js';
import { openStore } from '../stores/store-registry.js';
import { describeFailure, PROCESS_OUTPUT, type CommandOutput } from './command-output.js';
import { Progress } from './progress.js';

/** `--list --format=`. */
export type ListFormat = 'table' | 'json';
export const LIST_FORMATS: readonly ListFormat[] = ['table', 'json'];

/** "Expiring soon" in the summary line. */
const EXPIRING_WITHIN_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

/** One line of the listing: what a key is, never its material. */
export interface ListedKey {
  readonly email: string;
  readonly fingerprint: string;
  readonly algorithm: string;
  readonly bits: number | null;
  readonly curve: string | null;
  /** ISO 8601. */
  readonly created: string;
  /** ISO 8601; null when the key never expires. */
  readonly expires: string | null;
  readonly revoked: boolean;
  /** When the store last wrote this key (ISO 8601); null when the store cannot tell. */
  readonly lastWritten: string | null;
}

export interface ListSummary {
  readonly keys: number;
  readonly users: number;
  readonly expiringWithin30Days: number;
  readonly expired: number;
}

/**
 * `--list`: one line per stored key (email, fingerprint, algorithm and size, creation, expiry, last
 * written) and a summary line, as a table or as one JSON document on stdout (`--format=json`, for
 * jq; logs go to stderr then). Reads every key, so it works on every store; shows a count on a
 * terminal meanwhile. Prints nothing on stdout when the store fails halfway: a partial inventory
 * must not pass for the whole one. Resolves with the exit code.
 */
export async function listKeys(config: Config, logger: Logger, format: ListFormat, io: CommandOutput = PROCESS_OUTPUT, now = new Date()): Promise<number> {
  const progress = new Progress(io.err);
  const keys: ListedKey[] = [];
  try {
    const store = await openStore(config.store, { logger, setup: false });
    try {
      for await (const { key, writtenAt } of store.inventory()) {
        keys.push(listed(key.email, key.fingerprint, await describeKey(key.publicKey), writtenAt));
        progress.update(`Listing keys: ${keys.length}`);
      }
    } finally {
      await store.close();
    }
  } catch (e) {
    progress.clear();
    const reason = describeFailure(e);
    if (reason === undefined) throw e;
    io.err.write(`flowcrypt-ekm: list failed: ${reason}\n`);
    return EXIT_FAILURE;
  }
  progress.clear();
  keys.sort((a, b) => compare(a.email, b.email) || compare(a.created, b.created) || compare(a.fingerprint, b.fingerprint));
  const summary = summarise(keys, now);
  io.out.write(format === 'json' ? `${JSON.stringify({ keys, summary })}\n` : table(keys, summary));
  return EXIT_OK;
}

function listed(email: string, fingerprint: string, d: KeyDescription, writtenAt: number | undefined): ListedKey {
  return {
    email,
    fingerprint,
    algorithm: d.algorithm,
    bits: d.bits ?? null,
    curve: d.curve ?? null,
    created: d.created.toISOString(),
    expires: d.expires?.toISOString() ?? null,
    revoked: d.revoked,
    lastWritten: writtenAt === undefined ? null : new Date(writtenAt).toISOString(),
  };
}

export function summarise(keys: readonly ListedKey[], now: Date): ListSummary {
  const soon = now.getTime() + EXPIRING_WITHIN_DAYS * DAY_MS;
  const expiry = (k: ListedKey) => (k.expires === null ? Number.POSITIVE_INFINITY : Date.parse(k.expires));
  return {
    keys: keys.length,
    users: new Set(keys.map((k) => k.email)).size,
    expiringWithin30Days: keys.filter((k) => expiry(k) > now.getTime() && expiry(k) <= soon).length,
    expired: keys.filter((k) => expiry(k) <= now.getTime()).length,
  };
}

function table(keys: readonly ListedKey[], summary: ListSummary): string {
  const minute = (iso: string | null, none: string) => (iso === null ? none : `${iso.slice(0, 10)} ${iso.slice(11, 16)}`);
  const rows = [
    ['EMAIL', 'FINGERPRINT', 'ALGORITHM', 'CREATED', 'EXPIRES', 'LAST WRITTEN'],
    ...keys.map((k) => [
      // A key stored before the email rule may name its owner with control characters: escaped on a terminal.
      displayEmail(k.email),
      k.fingerprint,
      `${k.algorithm} ${k.bits ?? k.curve ?? ''}`.trim(),
      minute(k.created, ''),
      `${minute(k.expires, 'never')}${k.revoked ? ' (revoked)' : ''}`,
      minute(k.lastWritten, 'unknown'),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = keys.length === 0 ? [] : rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  lines.push(
    `${plural(summary.keys, 'key')}, ${plural(summary.users, 'user')}, ${summary.expiringWithin30Days} expiring within ${EXPIRING_WITHIN_DAYS} days, ${summary.expired} expired`,
  );
  return `${lines.join('\n')}\n`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
