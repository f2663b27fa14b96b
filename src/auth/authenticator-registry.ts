import type { AuthConfig } from '../config/config.js';
import type { Logger } from '../logging/logger.js';
import type { Authenticator } from './authenticator.js';
import { OpenIdConnectAuthenticator } from './openid-connect-authenticator.js';

/** The config name of each authenticator (`auth.type`) and its factory. */
export const AUTHENTICATORS: {
  readonly [T in AuthConfig['type']]: (config: AuthConfig, logger: Logger) => Authenticator;
} = {
  OpenIDConnectAuthenticator: (config, logger) => new OpenIdConnectAuthenticator(config.openid, logger),
} as const;
