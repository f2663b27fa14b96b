import winston from 'winston';

/**
 * Field names whose values are secrets whatever they hold (compared lowercased, without `-` and `_`):
 * the Authorization header, ID and access tokens, passwords, PINs, key material.
 */
const SECRET_NAMES = new Set([
  'authorization', 'proxyauthorization', 'cookie', 'setcookie', 'password', 'passphrase', 'pin', 'secret',
  'token', 'idtoken', 'accesstoken', 'refreshtoken', 'bearer', 'apikey', 'clientsecret',
  'privatekey', 'decryptedprivatekey', 'encryptionkey', 'key', 'keymaterial', 'armored',
]);
const SECRET_SUFFIXES = ['password', 'passphrase', 'secret', 'token', 'privatekey'];

/** Text that is a secret wherever it appears: armored private keys, PEM private keys, JWTs, bearer credentials. */
const SECRET_TEXT: readonly [RegExp, string][] = [
  [/-----BEGIN PGP PRIVATE KEY BLOCK-----[\s\S]*?(-----END PGP PRIVATE KEY BLOCK-----|$)/g, '[REDACTED PGP PRIVATE KEY]'],
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, '[REDACTED PRIVATE KEY]'],
  [/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, '[REDACTED JWT]'],
  // Credentials after their HTTP scheme; the lookahead wants a digit or symbol, so that prose
  // ("Basic authentication", "Splunk collector") is left alone.
  [/\b([Bb]earer)\s+(?=[A-Za-z0-9._~+/-]*[0-9._~+/-])[A-Za-z0-9._~+/-]{16,}=*/g, '$1 [REDACTED]'],
  [/\b([Bb]asic)\s+(?=[A-Za-z0-9+/]*[0-9+/])[A-Za-z0-9+/]{12,}={0,2}/g, '$1 [REDACTED]'],
  [/\b(Splunk)\s+[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b/g, '$1 [REDACTED]'],
];

export const REDACTED = '[REDACTED]';

/**
 * Every pattern of SECRET_TEXT needs one of these literally: text with none of them (nearly every
 * field of every entry) is returned without running the six patterns, which cost more than the
 * rest of an entry's formatting together.
 */
const SECRET_TEXT_TRIGGER = /-----BEGIN|eyJ|[Bb]earer|[Bb]asic|Splunk/;

/** Field names seen so far and whether they are secret; names come from code, so this stays small. */
const secretNameMemo = new Map<string, boolean>();
const SECRET_NAME_MEMO_MAX = 1000;

/** Whether a field of this name is never logged. */
export function isSecretFieldName(name: string): boolean {
  const known = secretNameMemo.get(name);
  if (known !== undefined) return known;
  const normal = name.toLowerCase().replace(/[-_]/g, '');
  const secret = SECRET_NAMES.has(normal) || SECRET_SUFFIXES.some((suffix) => normal.endsWith(suffix));
  if (secretNameMemo.size < SECRET_NAME_MEMO_MAX) secretNameMemo.set(name, secret);
  return secret;
}

/** The text with every secret-looking part replaced. */
export function redactText(text: string): string {
  if (!SECRET_TEXT_TRIGGER.test(text)) return text;
  let out = text;
  for (const [pattern, replacement] of SECRET_TEXT) out = out.replace(pattern, replacement);
  return out;
}

function redactValue(value: unknown): unknown {
  if (typeof value === 'string') return redactText(value);
  if (Array.isArray(value)) return value.map(redactValue);
  return value;
}

/**
 * The last line of defence behind "never log a secret": callers must not pass secrets, and this
 * winston format removes what slips through anyway, before any output sees the record.
 */
export const redactSecrets = winston.format((info) => {
  const record = info as Record<string, unknown>;
  for (const name of Object.keys(record)) {
    if (name === 'level') continue;
    record[name] = isSecretFieldName(name) ? REDACTED : redactValue(record[name]);
  }
  return info;
});
