import type { Authenticator, Identity } from '../auth/authenticator.js';
import { EkmError } from '../errors.js';
import { checkIdentityProviderOnScrape, tokenVerifications } from './ekm-metrics.js';

/**
 * An Authenticator that counts each verification by outcome (`ok`, or the error's stable code):
 * the identity and the token stay out of the metrics. Its identity provider's reachability is
 * `ekm_idp_up`.
 */
export function measuredAuthenticator(inner: Authenticator): Authenticator {
  const status = inner.identityProviderStatus?.bind(inner);
  if (status !== undefined) checkIdentityProviderOnScrape(status);
  return {
    ...(status === undefined ? {} : { identityProviderStatus: status }),
    async authenticate(authorization: string | undefined): Promise<Identity> {
      try {
        const identity = await inner.authenticate(authorization);
        tokenVerifications.inc({ outcome: 'ok' });
        return identity;
      } catch (e) {
        tokenVerifications.inc({ outcome: e instanceof EkmError ? e.code : 'ERR_INTERNAL' });
        throw e;
      }
    },
  };
}
