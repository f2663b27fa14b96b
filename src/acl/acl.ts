import type { Identity } from '../auth/authenticator.js';

/**
 * Decides whether an authenticated user may read or write the private keys stored under an email.
 * Throws ForbiddenError (403) when not.
 */
export interface Acl {
  authorizePrivateKeys(identity: Identity, ownerEmail: string): void;
}
