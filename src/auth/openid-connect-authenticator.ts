import { errors, jwtVerify, type JWTPayload } from 'jose';
import * as oidc from 'openid-client';
import type { AuthConfig } from '../config/config.js';
import { AuthenticationError, EkmError, IdentityProviderUnavailableError } from '../errors.js';
import { checkEmailAddress, normalizeDomain } from '../keys/email-address.js';
import type { Logger } from '../logging/logger.js';
import type { Authenticator, Identity } from './authenticator.js';
import { JwksCache } from './jwks-cache.js';
import type { OutboundFetch } from './outbound-fetch.js';
import { VerifiedTokenCache } from './verified-token-cache.js';

/** Asymmetric algorithms only: never `none`, never HS* (which would accept the public key as a secret). */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
/** Longest Authorization header looked at. Google ID tokens are about 1 KB; 8 KB leaves room for large claim sets. */
const MAX_AUTHORIZATION_LENGTH = 8 * 1024;
/** Clock skew tolerated on exp, nbf and iat. */
const CLOCK_TOLERANCE_S = 60;
/** Google issues both spellings (https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken). */
const GOOGLE_ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];

/**
 * OpenIDConnectAuthenticator: verifies the bearer ID token against the issuer's JWKS (configured, or
 * discovered from the issuer's metadata) and checks iss, aud, exp/nbf/iat and a verified email.
 */
export class OpenIdConnectAuthenticator implements Authenticator {
  private readonly issuers: string[];
  private readonly jwks: JwksCache;
  private readonly verified = new VerifiedTokenCache();
  private discovered: Promise<string> | undefined;

  constructor(
    private readonly config: AuthConfig['openid'],
    private readonly fetch: OutboundFetch,
    private readonly logger: Logger,
  ) {
    this.issuers = GOOGLE_ISSUERS.includes(config.issuer.replace(/\/$/, '')) ? GOOGLE_ISSUERS : [config.issuer];
    this.jwks = new JwksCache(() => this.jwksUri(), fetch, logger);
  }

  async authenticate(authorization: string | undefined): Promise<Identity> {
    const token = bearerToken(authorization);
    const cached = this.verified.get(token);
    if (cached !== undefined) return cached;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks.getKey, {
        algorithms: ALGORITHMS,
        issuer: this.issuers,
        audience: [...this.config.audience],
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (e) {
      throw describeFailure(e);
    }
    if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + CLOCK_TOLERANCE_S) {
      throw new AuthenticationError('ERR_TOKEN_ISSUED_IN_FUTURE', 'ID token was issued in the future; check the clocks');
    }
    const identity = identityOf(payload);
    this.verified.set(token, identity, (payload.exp!) * 1000);
    return identity;
  }

  /** The JWKS URL: configured, or discovered once from the issuer (retried after a failure). */
  private jwksUri(): Promise<string> {
    if (this.config.jwks !== undefined) return Promise.resolve(this.config.jwks);
    this.discovered ??= oidc
      .discovery(new URL(this.config.issuer), this.config.audience[0]!, undefined, undefined, { [oidc.customFetch]: this.fetch })
      .then((c) => {
        const uri = c.serverMetadata().jwks_uri;
        if (uri === undefined) throw new Error(`The issuer's metadata has no jwks_uri`);
        this.logger.info('Discovered the JWKS URL from the issuer metadata', { jwksUri: uri });
        return uri;
      })
      .catch((e: unknown) => {
        this.discovered = undefined;
        throw new IdentityProviderUnavailableError(`OpenID discovery at ${this.config.issuer} failed: ${(e as Error).message}`);
      });
    return this.discovered;
  }
}

function bearerToken(authorization: string | undefined): string {
  if (authorization === undefined || authorization === '') {
    throw new AuthenticationError('ERR_TOKEN_MISSING', 'Missing Authorization header', 'Send Authorization: Bearer <ID token>');
  }
  // Before any parsing: a large token costs CPU in base64 and JSON decoding even when it is refused.
  if (authorization.length > MAX_AUTHORIZATION_LENGTH) {
    throw new AuthenticationError('ERR_TOKEN_TOO_LARGE', 'ID token is too large', `At most ${MAX_AUTHORIZATION_LENGTH} characters are accepted`);
  }
  const m = /^Bearer +([A-Za-z0-9_\-.]+=*)\s*$/i.exec(authorization);
  if (m === null) throw new AuthenticationError('ERR_TOKEN_MALFORMED', 'Authorization header must be: Bearer <ID token>');
  return m[1]!;
}

function identityOf(payload: JWTPayload): Identity {
  const claim = payload.email;
  if (typeof claim !== 'string' || claim === '') {
    throw new AuthenticationError('ERR_TOKEN_NO_EMAIL', 'ID token has no email claim', 'Request the email scope when signing in');
  }
  // The one email rule (keys/email-address.ts): a lookalike of another user's email is refused, never folded onto it.
  const { email, refusal } = checkEmailAddress(claim);
  if (email === undefined) {
    throw new AuthenticationError('ERR_TOKEN_EMAIL', `The email in the ID token cannot be used here: it ${refusal}`, 'Emails are compared in ASCII only; ask your administrator');
  }
  const verified = payload.email_verified;
  if (verified !== true && verified !== 'true') {
    throw new AuthenticationError('ERR_EMAIL_NOT_VERIFIED', 'The email in the ID token is not verified');
  }
  const hd = payload.hd;
  const hostedDomain = typeof hd === 'string' ? normalizeDomain(hd) : undefined;
  if (typeof hd === 'string' && hostedDomain === undefined) {
    throw new AuthenticationError('ERR_TOKEN_HOSTED_DOMAIN', "The hosted domain (hd) in the ID token is not a domain name");
  }
  return { email, hostedDomain };
}

/** A 401 (or the 503 it was) saying what was wrong, never echoing the token. */
function describeFailure(e: unknown): EkmError {
  if (e instanceof EkmError) return e;
  if (e instanceof errors.JWTExpired) return new AuthenticationError('ERR_TOKEN_EXPIRED', 'ID token has expired', 'Sign in again to get a fresh token');
  if (e instanceof errors.JWTClaimValidationFailed) {
    switch (e.claim) {
      case 'aud':
        return new AuthenticationError('ERR_TOKEN_WRONG_AUDIENCE', 'ID token has the wrong audience', 'The token was issued for another client id than auth.openid.audience lists');
      case 'iss':
        return new AuthenticationError('ERR_TOKEN_WRONG_ISSUER', 'ID token has the wrong issuer');
      case 'nbf':
        return new AuthenticationError('ERR_TOKEN_NOT_YET_VALID', 'ID token is not valid yet; check the clocks');
      default:
        return new AuthenticationError('ERR_TOKEN_CLAIM_INVALID', `ID token claim '${e.claim}' is missing or invalid`);
    }
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return new AuthenticationError('ERR_TOKEN_ALGORITHM', 'ID token signing algorithm is not accepted');
  if (e instanceof errors.JWKSNoMatchingKey) return new AuthenticationError('ERR_TOKEN_UNKNOWN_KEY', 'ID token is signed with an unknown signing key');
  if (e instanceof errors.JWKSMultipleMatchingKeys) return new AuthenticationError('ERR_TOKEN_UNKNOWN_KEY', 'ID token signing key is ambiguous');
  if (e instanceof errors.JWSSignatureVerificationFailed) return new AuthenticationError('ERR_TOKEN_SIGNATURE', 'ID token signature is invalid');
  if (e instanceof errors.JOSEError) return new AuthenticationError('ERR_TOKEN_MALFORMED', 'ID token is malformed or not acceptable');
  return new AuthenticationError('ERR_TOKEN_MALFORMED', 'ID token is malformed or not acceptable');
}
