import type { Authenticator, Identity } from '../auth/authenticator.js';
import { EkmError } from '../errors.js';
import { tokenVerifications } from './ekm-metrics.js';

/**
 * An Authenticator that counts each verification by outcome (`ok`, or the error's stable code):
 * the identity and the token stay out of the metrics.
 */
export function measuredAuthenticator(inner: Authenticator): Authenticator {
  return {
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
