import { displayEmail, normalizeEmailAddress } from '../keys/email-address.js';
import type { UnusableKeyState } from '../keys/private-key-policy.js';
import type { UpsertResult } from '../stores/store.js';
import type { Logger } from './logger.js';

/** What was done to private key material. */
export type AuditEvent =
  /** GET /v1/keys/private (or the legacy path): the user's private keys were asked for. */
  | 'private-key.read'
  /** PUT /v1/keys/private (or the legacy path): a private key was submitted for storage. */
  | 'private-key.write'
  /** --import by an administrator. */
  | 'private-key.import'
  /** --export by an administrator. */
  | 'private-key.export'
  /** A key removed from the store. */
  | 'private-key.delete'
  /** --rotate-store-key: the store's own keys were replaced (no user's key is named). */
  | 'store-key.rotate';

/** One access to private key material: who, which keys, from where, with what result. Never the material. */
export interface AuditRecord {
  readonly event: AuditEvent;
  /** The verified email of the token; undefined when the request was refused before that was known. */
  readonly email: string | undefined;
  /** Fingerprints (hex) of the keys returned or written; empty when none. */
  readonly fingerprints: readonly string[];
  /** The client's address as the service saw it (after trusted proxy headers, if any). */
  readonly clientAddress: string | undefined;
  readonly userAgent: string | undefined;
  /** The HTTP status answered (or 0 for command-line operations that did not complete). */
  readonly status: number;
  /** The stable error code when refused, e.g. ERR_FORBIDDEN. */
  readonly code?: string | undefined;
  /** For writes: what the store did (added, updated, unchanged). */
  readonly change?: UpsertResult | undefined;
  /** For writes of a key that is no longer usable: `revoked` or `expired` (an update of a held key). */
  readonly keyState?: UnusableKeyState | undefined;
  /** Usually already on the request's child logger; given here, it is set explicitly. */
  readonly requestId?: string | undefined;
}

const FINGERPRINT = /^[0-9A-F]{16,64}$/;
const USER_AGENT_MAX = 256;

/**
 * Writes an audit entry, at info whatever the configured level, to every configured output: the message is the event, and the
 * field `audit` too (search `audit=*` in any output). Fingerprints are checked to be hex, so that
 * nothing else (key material above all) can be passed off as one.
 */
export function audit(logger: Logger, record: AuditRecord): void {
  const status = record.status;
  logger.audit(record.event, {
    audit: record.event,
    outcome: status >= 200 && status < 300 ? 'success' : status === 0 || status >= 500 ? 'error' : 'refused',
    status,
    code: record.code,
    change: record.change,
    ...(record.keyState === undefined ? {} : { keyState: record.keyState }),
    // Under the one email rule, else escaped as given: Unicode lowercasing made a lookalike's email its victim's.
    email: record.email === undefined ? undefined : (normalizeEmailAddress(record.email) ?? displayEmail(record.email)),
    fingerprints: record.fingerprints.map((fp) => {
      const hex = fp.replace(/\s/g, '').toUpperCase();
      return FINGERPRINT.test(hex) ? hex : '[not a fingerprint]';
    }),
    clientAddress: record.clientAddress,
    userAgent: record.userAgent === undefined ? undefined : printable(record.userAgent).slice(0, USER_AGENT_MAX),
    ...(record.requestId === undefined ? {} : { requestId: record.requestId }),
  });
}

/** A string with control characters (log injection) replaced. */
function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, '?');
}
