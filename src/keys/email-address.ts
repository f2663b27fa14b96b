/**
 * The one rule for an email used as an identity (docs/operator-guide.md, "The email rule"): the
 * token's email, the owner of a stored or imported key, the user ids that make a key its owner's,
 * the public-key route, the Web Key Directory and the ACL all go through here, so that one mailbox
 * has one spelling and no other string maps onto it.
 *
 * - Lowercased in ASCII only (A-Z to a-z, as GnuPG does for WKD). Unicode lowercasing is what let
 *   `\u212Aate@example.com` (U+212A KELVIN SIGN) become kate@example.com, and U+0130 become `i̇`.
 * - After that, printable ASCII only: any other character is refused, never folded. That is what
 *   makes an accepted email unchanged by NFKC (fullwidth `ｋ` would become `k`) and by Unicode
 *   lowercasing, so no lookalike reaches another user's keys. Internationalised domains are
 *   accepted in their `xn--` form; internationalised local parts (RFC 6531) are not.
 * - Syntax, stricter than RFC 5322 on purpose (an identity, not every deliverable address):
 *   `local@domain` with exactly one `@`, at most 254 characters (RFC 5321 section 4.5.3.1.3: a
 *   path of 256 less its angle brackets).
 *   The local part is a dot-atom (RFC 5322 section 3.2.3): 1 to 64 characters (RFC 5321 section
 *   4.5.3.1.1) of letters, digits and ! # $ % & * + - = ? ^ _ { | } ~, dots between them (none
 *   leading, trailing or doubled). Quoted local parts, quotes (" ' `), backslash, < >, spaces and
 *   control characters are refused: they break out of where emails are written (a user id's
 *   `<...>`, log lines, shells, HTML). So is `/`, which would cross a URL path segment.
 *   The domain is 1 to 253 characters of dot-separated labels (RFC 1035 section 2.3.4): each 1 to
 *   63 letters, digits and hyphens, not starting or ending with a hyphen. No address literal
 *   (`[192.0.2.1]`), no trailing dot.
 */

/** RFC 5321 section 4.5.3.1.3 (a path of 256 characters less its angle brackets). */
const MAX_EMAIL_LENGTH = 254;
/** RFC 5321 section 4.5.3.1.1. */
const MAX_LOCAL_PART_LENGTH = 64;
/** RFC 1035 section 2.3.4 (255 octets on the wire less the length bytes). */
const MAX_DOMAIN_LENGTH = 253;
/** Printable ASCII that may never appear: quotes, backslash, angle brackets, `/` and RFC 5322 specials. */
const REFUSED_PRINTABLE = new Set(['"', "'", '`', '\\', '<', '>', '/', '(', ')', '[', ']', ',', ';', ':']);

const ATOM = /^[a-z0-9!#$%&*+\-=?^_{|}~]+$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** An email accepted as an identity (`email`, normalised), or why not (`refusal`, e.g. "contains the control character U+001B": safe to print, never the input). */
export type EmailCheck = { readonly email: string; readonly refusal?: undefined } | { readonly email?: undefined; readonly refusal: string };

/** A-Z to a-z and nothing else. */
export function lowercaseAscii(text: string): string {
  return text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

/** `raw` as an identity under the rule above, or the reason it cannot be one (never echoing `raw`). */
export function checkEmailAddress(raw: string): EmailCheck {
  if (raw.length > MAX_EMAIL_LENGTH) return { refusal: `is longer than ${MAX_EMAIL_LENGTH} characters` };
  const characters = refusedCharacter(raw);
  if (characters !== undefined) return { refusal: characters };
  const email = lowercaseAscii(raw);
  const at = email.indexOf('@');
  if (at === -1) return { refusal: 'has no @' };
  if (email.includes('@', at + 1)) return { refusal: 'has more than one @' };
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (local.length === 0) return { refusal: 'has an empty local part' };
  if (local.length > MAX_LOCAL_PART_LENGTH) return { refusal: `has a local part longer than ${MAX_LOCAL_PART_LENGTH} characters` };
  if (!local.split('.').every((atom) => ATOM.test(atom))) return { refusal: 'has a local part with a leading, trailing or doubled dot' };
  const domainRefusal = checkDomainSyntax(domain);
  if (domainRefusal !== undefined) return { refusal: domainRefusal };
  return { email };
}

/** The normalised email, or undefined when `raw` (absent, or any string) cannot be an identity. */
export function normalizeEmailAddress(raw: string | undefined): string | undefined {
  return raw === undefined ? undefined : checkEmailAddress(raw).email;
}

/**
 * Whether `candidate` (a user id's email, a path's) names the mailbox `owner` (a normalised email).
 * A candidate the rule refuses names nobody, whatever it folds to elsewhere.
 */
export function isSameMailbox(candidate: string | undefined, owner: string): boolean {
  return normalizeEmailAddress(candidate) === owner;
}

/** A domain name under the rule above (ASCII-lowercased), or undefined. */
export function normalizeDomain(raw: string): string | undefined {
  if (refusedCharacter(raw) !== undefined) return undefined;
  const domain = lowercaseAscii(raw);
  return checkDomainSyntax(domain) === undefined ? domain : undefined;
}

/** The local part of a normalised email. */
export function localPartOf(email: string): string {
  return email.slice(0, email.lastIndexOf('@'));
}

/** The domain of a normalised email. */
export function domainOf(email: string): string {
  return email.slice(email.lastIndexOf('@') + 1);
}

/**
 * `raw` for an operator's report or a log line: printable ASCII as it is (backslash doubled),
 * anything else as `\uXXXX` (`\u{XXXXX}` beyond the BMP), so a lookalike shows as what it is and
 * no control character reaches a terminal. At most 254 characters of `raw` are shown.
 */
export function displayEmail(raw: string): string {
  let out = '';
  for (const c of raw.slice(0, MAX_EMAIL_LENGTH)) {
    const code = c.codePointAt(0)!;
    if (c === '\\') out += '\\\\';
    else if (code >= 0x20 && code <= 0x7e) out += c;
    else out += code > 0xffff ? `\\u{${code.toString(16).toUpperCase()}}` : `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return raw.length > MAX_EMAIL_LENGTH ? `${out}...` : out;
}

/** The first character the rule refuses, described, or undefined. */
function refusedCharacter(raw: string): string | undefined {
  for (const c of raw) {
    const code = c.codePointAt(0)!;
    if (code < 0x20 || code === 0x7f) return `contains the control character ${codePoint(code)}`;
    if (code === 0x20) return 'contains a space';
    if (code > 0x7e) return `contains the character ${codePoint(code)}, which is not printable ASCII (emails are compared in ASCII only)`;
    if (REFUSED_PRINTABLE.has(c)) return `contains the character ${c} (${codePoint(code)})`;
  }
  return undefined;
}

function checkDomainSyntax(domain: string): string | undefined {
  if (domain.length === 0) return 'has an empty domain';
  if (domain.length > MAX_DOMAIN_LENGTH) return `has a domain longer than ${MAX_DOMAIN_LENGTH} characters`;
  if (!domain.split('.').every((label) => LABEL.test(label))) return 'has a domain that is not a domain name (labels of letters, digits and hyphens)';
  return undefined;
}

function codePoint(code: number): string {
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}
