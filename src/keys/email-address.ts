/** Longest address RFC 5321 allows (64 for the local part, @, 255 for the domain). */
const MAX_LENGTH = 320;

/**
 * Whether a (lowercased, trimmed) string can name a key's owner: `local@domain` without whitespace,
 * a second `@` or a `/` (which would escape a URL path), at most 320 characters.
 */
export function isEmailAddress(email: string): boolean {
  return email.length <= MAX_LENGTH && /^[^\s@/]+@[^\s@/]+$/.test(email);
}
