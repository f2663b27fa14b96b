/**
 * The properties every test config repeats: an organisation, plain HTTP (TLS is the proxy's, or a
 * test's own subject), the OpenID Connect authenticator and SimpleAcl. A test spreads its own
 * properties after these, so any of them can be overridden.
 */
export function baseProperties(
  options: {
    readonly orgId?: string;
    /** The development IdP the daemon verifies tokens against; without it, an issuer never contacted. */
    readonly idp?: { readonly issuer: string; readonly jwksUri: string };
    readonly audience?: string;
  } = {},
): Record<string, string> {
  return {
    'org.id': options.orgId ?? 'test.org',
    'api.https.enabled': 'false',
    'auth.type': 'OpenIDConnectAuthenticator',
    'auth.openid.issuer': options.idp?.issuer ?? 'https://issuer.invalid',
    ...(options.idp === undefined ? {} : { 'auth.openid.jwks': options.idp.jwksUri }),
    'auth.openid.audience': options.audience ?? 'test',
    'acl.type': 'SimpleAcl',
  };
}

/** store.* of an EncryptedDbStore in `folder`. */
export function encryptedDbProperties(folder: string, passphrase = 'test database passphrase'): Record<string, string> {
  return { 'store.type': 'EncryptedDbStore', 'store.db.folder': folder, 'store.db.encryption.key': passphrase };
}
