import { ForbiddenError } from '../errors.js';
import type { Identity } from '../auth/authenticator.js';
import { domainOf, normalizeEmailAddress } from '../keys/email-address.js';
import type { Acl } from './acl.js';

/**
 * SimpleAcl: each user reads and writes only the private keys of their own verified email,
 * optionally only when they belong to one of the organisation's domains (`org.domains`): by the
 * token's `hd` claim when present, else by the email's domain.
 */
export class SimpleAcl implements Acl {
  constructor(private readonly domains: readonly string[] | undefined) {}

  authorizePrivateKeys(identity: Identity, ownerEmail: string): void {
    if (this.domains !== undefined) {
      const domain = identity.hostedDomain ?? domainOf(identity.email);
      if (!this.domains.includes(domain)) {
        throw new ForbiddenError('Your account is not in a domain this key manager serves', `Domain: ${domain}`);
      }
    }
    // Both sides under the one email rule: an email it refuses is nobody's, so never equal.
    const owner = normalizeEmailAddress(ownerEmail);
    if (owner === undefined || normalizeEmailAddress(identity.email) !== owner) {
      throw new ForbiddenError("You may only access your own private keys");
    }
  }
}
