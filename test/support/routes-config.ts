/** A config for an in-process app over an EncryptedDbStore in `folder` (passphrase `routes test passphrase`). */
export function configText(folder: string, extra: string[] = []): string {
  return [
    'org.id=routes-test',
    'api.https.enabled=false',
    'store.type=EncryptedDbStore',
    `store.db.folder=${folder}`,
    'store.db.encryption.key=routes test passphrase',
    'auth.type=OpenIDConnectAuthenticator',
    'auth.openid.issuer=https://issuer.invalid',
    'auth.openid.audience=test',
    'acl.type=SimpleAcl',
    ...extra,
  ].join('\n');
}
