/** Who made a request, as established from their verified ID token. */
export interface Identity {
  /** The verified email, normalised by keys/email-address.ts (ASCII-lowercased, printable ASCII only). */
  readonly email: string;
  /** The Google Workspace domain (`hd` claim, ASCII-lowercased), when the IdP sends one. */
  readonly hostedDomain: string | undefined;
}

/**
 * Establishes the identity behind a request's `Authorization` header. Throws AuthenticationError
 * (401) for a missing or unacceptable token, IdentityProviderUnavailableError (503) when the IdP's
 * signing keys cannot be had: a client told 401 would force its user to sign in again.
 */
export interface Authenticator {
  authenticate(authorization: string | undefined): Promise<Identity>;
  /**
   * The identity provider's reachability for /health and the metrics, checked again when the last
   * check is old (bounded: never holds /health for long). Absent: an authenticator without a provider.
   */
  identityProviderStatus?(): Promise<IdentityProviderStatus>;
}

/** Whether the identity provider's signing keys (JWKS) could be fetched at the last try; `unknown` before the first. */
export type IdentityProviderStatus = 'up' | 'down' | 'unknown';
