import { isSameMailbox } from './email-address.js';
import { loadOpenpgp } from './load-openpgp.js';

/**
 * A stored public key as a Web Key Directory serves it: binary (not armored) and carrying only the
 * user ids of `email`, as gpg-wks-server publishes keys (draft-koch-openpgp-webkey-service, section
 * 3.1: "the key needs to carry a User ID packet with that mail address"; other addresses on the
 * key are not the directory's to publish). Expired or revoked keys are served as they are: the
 * draft leaves them to the client, and serving a revocation is how it spreads.
 * undefined when the key has no user id for `email`.
 */
export async function wkdPublicKey(armoredPublicKey: string, email: string): Promise<Uint8Array | undefined> {
  const key = await (await loadOpenpgp()).readKey({ armoredKey: armoredPublicKey });
  const publicKey = key.isPrivate() ? key.toPublic() : key;
  const matching = publicKey.users.filter((u) => isSameMailbox(u.userID?.email, email));
  if (matching.length === 0) return undefined;
  publicKey.users = matching;
  return publicKey.write();
}
