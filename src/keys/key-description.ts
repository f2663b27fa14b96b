import { loadOpenpgp } from './load-openpgp.js';

/** What an administrator's inventory shows of a key: public facts only, from its public key. */
export interface KeyDescription {
  /** OpenPGP.js's name of the primary key's algorithm, e.g. `rsaEncryptSign`, `eddsaLegacy`, `ed25519`. */
  readonly algorithm: string;
  /** RSA (and DSA, ElGamal) modulus size; undefined for elliptic curves. */
  readonly bits: number | undefined;
  /** The elliptic curve, e.g. `ed25519Legacy`; undefined for RSA. */
  readonly curve: string | undefined;
  readonly created: Date;
  /** When the key expires (its self-signatures' expiry); null when it never does. */
  readonly expires: Date | null;
  readonly revoked: boolean;
}

/**
 * Describes a stored key from its armored public key. The key was validated when it was stored, so
 * this only reads; a key whose self-signature no longer verifies (a library upgrade's stricter
 * rules) shows no expiry rather than failing the whole listing.
 */
export async function describeKey(armoredPublicKey: string): Promise<KeyDescription> {
  const openpgp = await loadOpenpgp();
  const key = await openpgp.readKey({ armoredKey: armoredPublicKey });
  const info = key.getAlgorithmInfo();
  let expires: Date | null = null;
  try {
    const time = await key.getExpirationTime();
    expires = time instanceof Date ? time : null;
  } catch {
    // see above
  }
  return {
    algorithm: info.algorithm,
    bits: info.bits,
    curve: info.curve,
    created: key.getCreationTime(),
    expires,
    revoked: await key.isRevoked().catch(() => false),
  };
}
