import { createHash } from 'node:crypto';
import type { Identity } from './authenticator.js';

/**
 * Identities of tokens already verified, until the token expires. Keyed by the SHA-256 of the whole
 * token, so a token with any claim or signature byte changed is a different entry and is verified
 * anew; failures are never cached. Bounded: the oldest entries go first.
 */
export class VerifiedTokenCache {
  private readonly entries = new Map<string, { identity: Identity; expiresAt: number }>();

  constructor(private readonly maxEntries = 10_000) {}

  get(token: string, now = Date.now()): Identity | undefined {
    const key = hash(token);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (now >= entry.expiresAt) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.identity;
  }

  set(token: string, identity: Identity, expiresAt: number): void {
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(hash(token), { identity, expiresAt });
  }
}

function hash(token: string): string {
  return createHash('sha256').update(token).digest('base64');
}
