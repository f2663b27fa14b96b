import type { AuthConfig } from '../config/config.js';
import type { Logger } from '../logging/logger.js';
import type { Authenticator } from './authenticator.js';
import { OpenIdConnectAuthenticator } from './openid-connect-authenticator.js';
import type { OutboundFetch } from './outbound-fetch.js';

/** What every authenticator receives besides its own section of the config. */
export interface AuthenticatorDependencies {
  readonly logger: Logger;
  /** For calls to the identity provider; honours the proxy environment. */
  readonly fetch: OutboundFetch;
}

/** The config name of each authenticator (`auth.type`) and its factory. */
export const AUTHENTICATORS: Readonly<Record<AuthConfig['type'], (config: AuthConfig, deps: AuthenticatorDependencies) => Authenticator>> = {
  OpenIDConnectAuthenticator: (config, deps) => new OpenIdConnectAuthenticator(config.openid, deps.fetch, deps.logger),
} as const;
