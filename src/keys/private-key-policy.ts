import type * as openpgp from 'openpgp';
import { KeyRejectedError } from '../errors.js';
import type { StoredKey } from '../stores/store.js';
import { isSameMailbox, normalizeEmailAddress } from './email-address.js';
import { loadOpenpgp } from './load-openpgp.js';

/** Smallest RSA modulus accepted, in bits. */
export const MIN_RSA_BITS = 2048;
/** Elliptic curves accepted (OpenPGP.js names). */
const ACCEPTED_CURVES = new Set(['ed25519Legacy', 'curve25519Legacy', 'nistP256', 'nistP384', 'nistP521', 'brainpoolP256r1', 'brainpoolP384r1', 'brainpoolP512r1']);
const ACCEPTED_ALGORITHMS = new Set(['rsaEncryptSign', 'rsaEncrypt', 'rsaSign', 'ecdsa', 'eddsaLegacy', 'ecdh', 'ed25519', 'x25519', 'ed448', 'x448']);
/** Armored keys larger than this are refused before parsing. */
const MAX_ARMORED_LENGTH = 256 * 1024;

/** What the client may assert about its key in the legacy PUT body; each must match the key. */
export interface ClaimedKeyFacts {
  readonly publicKey?: string | undefined;
  readonly fingerprint?: string | undefined;
  readonly longid?: string | undefined;
}

/**
 * Validates an armored private key submitted by `email` (SPEC.md, "What a stored private key must
 * be"): exactly one key, private, fully decrypted, a valid self-certified user id for that email,
 * not expired or revoked, and algorithms within policy. Returns the record to store, with the
 * public key derived here rather than trusted from the client.
 */
export async function validatePrivateKey(armored: string, email: string, claimed: ClaimedKeyFacts = {}, now = new Date()): Promise<StoredKey> {
  if (normalizeEmailAddress(email) !== email) throw new TypeError('validatePrivateKey needs an owner email normalised by keys/email-address.ts');
  if (armored.length > MAX_ARMORED_LENGTH) throw new KeyRejectedError('The private key is too large');
  if (!armored.includes('-----BEGIN PGP PRIVATE KEY BLOCK-----')) {
    if (armored.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) {
      throw new KeyRejectedError('This is a public key; an armored, decrypted private key is required');
    }
    throw new KeyRejectedError('Not an armored OpenPGP private key');
  }
  const blocks = armored.split('-----BEGIN PGP PRIVATE KEY BLOCK-----').length - 1;
  if (blocks > 1) throw new KeyRejectedError(`Exactly one private key is expected, found ${blocks} armored blocks`);
  let keys: openpgp.PrivateKey[];
  try {
    keys = await (await loadOpenpgp()).readPrivateKeys({ armoredKeys: armored });
  } catch {
    throw new KeyRejectedError('Not a valid OpenPGP private key');
  }
  if (keys.length !== 1) throw new KeyRejectedError(`Exactly one private key is expected, found ${keys.length}`);
  const key = keys[0]!;
  if (!key.isPrivate()) throw new KeyRejectedError('This is a public key; a private key is required');
  for (const k of [key, ...key.getSubkeys()]) {
    const packet = k.keyPacket as openpgp.SecretKeyPacket | openpgp.SecretSubkeyPacket;
    if (packet.isDummy()) throw new KeyRejectedError('The key has secret parts missing (a stub); the whole decrypted key is required');
    if (!packet.isDecrypted()) throw new KeyRejectedError('The private key is encrypted; submit it decrypted');
  }
  try {
    await key.verifyPrimaryKey(now);
  } catch (e) {
    const message = (e as Error).message ?? '';
    if (/expired/i.test(message)) throw new KeyRejectedError('The key has expired');
    if (/revoked/i.test(message)) throw new KeyRejectedError('The key is revoked');
    throw new KeyRejectedError('The key has no valid self-signature', message);
  }
  const expiration = await key.getExpirationTime();
  if (expiration instanceof Date && expiration.getTime() <= now.getTime()) throw new KeyRejectedError('The key has expired');
  await requireUserId(key, email, now);
  for (const k of [key, ...key.getSubkeys()]) requirePolicy(k.getAlgorithmInfo());

  const fingerprint = key.getFingerprint().toUpperCase();
  const publicKey = key.toPublic();
  if (claimed.fingerprint !== undefined && claimed.fingerprint.replace(/\s/g, '').toUpperCase() !== fingerprint) {
    throw new KeyRejectedError('The fingerprint sent does not match the private key');
  }
  if (claimed.longid !== undefined && claimed.longid.toUpperCase() !== fingerprint.slice(-16)) {
    throw new KeyRejectedError('The longid sent does not match the private key');
  }
  if (claimed.publicKey !== undefined) {
    let sent: openpgp.Key;
    try {
      sent = await (await loadOpenpgp()).readKey({ armoredKey: claimed.publicKey });
    } catch {
      throw new KeyRejectedError('The public key sent is not a valid OpenPGP key');
    }
    if (sent.getFingerprint().toUpperCase() !== fingerprint) {
      throw new KeyRejectedError('The public key sent does not match the private key');
    }
  }
  return { email, fingerprint, privateKey: key.armor(), publicKey: publicKey.armor() };
}

/**
 * A user id is the owner's only when its email names the owner's mailbox under the one email rule
 * (a Kelvin-sign or fullwidth lookalike of kate@example.com is not Kate's); other user ids stay on
 * the key as they are.
 */
async function requireUserId(key: openpgp.PrivateKey, email: string, now: Date): Promise<void> {
  const matching = key.users.filter((u) => isSameMailbox(u.userID?.email, email));
  if (matching.length === 0) {
    throw new KeyRejectedError(`The key has no user id for ${email}`, 'The key must carry a user id with the email you are signed in with, in ASCII (a lookalike character such as U+212A KELVIN SIGN does not count)');
  }
  for (const user of matching) {
    try {
      await user.verify(now);
      return;
    } catch {
      // try the next user id with this email
    }
  }
  throw new KeyRejectedError(`The user id for ${email} is not validly self-certified, or is revoked or expired`);
}

function requirePolicy(info: openpgp.AlgorithmInfo): void {
  const algorithm = String(info.algorithm);
  if (!ACCEPTED_ALGORITHMS.has(algorithm)) {
    throw new KeyRejectedError(`Key algorithm ${algorithm} is not accepted`, 'Use RSA of at least 2048 bits or a modern elliptic curve');
  }
  if (algorithm.startsWith('rsa') && (info.bits ?? 0) < MIN_RSA_BITS) {
    throw new KeyRejectedError(`RSA keys must have at least ${MIN_RSA_BITS} bits, this one has ${info.bits ?? 0}`);
  }
  if (info.curve !== undefined && !ACCEPTED_CURVES.has(String(info.curve))) {
    throw new KeyRejectedError(`Elliptic curve ${String(info.curve)} is not accepted`);
  }
}
