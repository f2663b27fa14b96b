import type * as openpgp from 'openpgp';
import { KeyRejectedError } from '../errors.js';
import type { StoredKey } from '../stores/store.js';
import { isSameMailbox, normalizeEmailAddress } from './email-address.js';
import { checkKeyStructure } from './key-structure-check.js';
import { keyVerificationPool } from './key-verification-pool.js';
import { loadOpenpgp } from './load-openpgp.js';

/** Armored keys larger than this are refused before parsing. */
const MAX_ARMORED_LENGTH = 256 * 1024;

/** What the client may assert about its key in the legacy PUT body; each must match the key. */
export interface ClaimedKeyFacts {
  readonly publicKey?: string | undefined;
  readonly fingerprint?: string | undefined;
  readonly longid?: string | undefined;
}

/**
 * What a verified key is at upload time. A revoked or expired key is stored only as an update of a
 * fingerprint its owner already holds: that is how a revocation (or a lapsed expiry) reaches the
 * apps, which keep their local copy of a key until the EKM serves its new state; a new key must be
 * valid.
 */
export type KeyCondition = 'valid' | 'revoked' | 'expired';

/** What an audit entry says of a stored key that is no longer usable. */
export type UnusableKeyState = Exclude<KeyCondition, 'valid'>;

/** The key's state for the audit entry: undefined for a valid key. */
export function unusableStateOf(key: ValidatedKey): UnusableKeyState | undefined {
  return key.condition === 'valid' ? undefined : key.condition;
}

/** A key that passed validation: the record to store, and its condition. */
export interface ValidatedKey extends StoredKey {
  readonly condition: KeyCondition;
}

/** The fingerprints the owner already holds, asked only when the key is revoked or expired. */
export type HeldFingerprints = () => Promise<Iterable<string>>;

/**
 * Validates an armored private key submitted by `email` (docs/operator-guide.md, "What PUT
 * accepts"): exactly one key, private, fully decrypted, a valid self-certified user id for that email,
 * and algorithms within policy; revoked (by a revocation signature that verifies) or expired only
 * when `held` names its fingerprint. Returns the record to store, with the public key derived here
 * rather than trusted from the client. The structure is checked here, in milliseconds; the
 * signatures are verified in a verification thread under a deadline (the event loop never waits on
 * key crypto).
 */
export async function validatePrivateKey(
  armored: string,
  email: string,
  claimed: ClaimedKeyFacts = {},
  now = new Date(),
  held: HeldFingerprints = async () => [],
): Promise<ValidatedKey> {
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
  const pgp = await loadOpenpgp();
  let binary: Uint8Array;
  try {
    // openpgp's declarations type `data` with a stream type from a package they do not ship; the check
    // below finds out what it is.
    const { type, data } = (await pgp.unarmor(armored)) as { type: openpgp.enums.armor; data: unknown };
    if (type !== pgp.enums.armor.privateKey || !(data instanceof Uint8Array)) throw new TypeError('not a private key block');
    binary = data;
  } catch {
    throw new KeyRejectedError('Not a valid OpenPGP private key');
  }
  const key = await keyVerificationPool.verify(await checkKeyStructure(binary), email, now);

  const { fingerprint } = key;
  if (key.condition !== 'valid' && ![...(await held())].includes(fingerprint)) {
    throw new KeyRejectedError(
      key.condition === 'revoked' ? 'The key is revoked' : 'The key has expired',
      'A revoked or expired key is stored only as an update of a key you already hold; a new key must be valid',
    );
  }
  if (claimed.fingerprint !== undefined && claimed.fingerprint.replace(/\s/g, '').toUpperCase() !== fingerprint) {
    throw new KeyRejectedError('The fingerprint sent does not match the private key');
  }
  if (claimed.longid !== undefined && claimed.longid.toUpperCase() !== fingerprint.slice(-16)) {
    throw new KeyRejectedError('The longid sent does not match the private key');
  }
  if (claimed.publicKey !== undefined) {
    let sent: openpgp.Key;
    try {
      sent = await pgp.readKey({ armoredKey: claimed.publicKey });
    } catch {
      throw new KeyRejectedError('The public key sent is not a valid OpenPGP key');
    }
    if (sent.getFingerprint().toUpperCase() !== fingerprint) {
      throw new KeyRejectedError('The public key sent does not match the private key');
    }
  }
  return key;
}

/**
 * The cryptographic half of validatePrivateKey, run in a verification thread on a key that passed
 * checkKeyStructure: the self-signatures of the primary key and of the user id for `email`, and
 * whether the key is revoked (a revocation signature that verifies) or expired. A revoked or expired
 * key is verified as it stood before (the self-signatures must still hold); validatePrivateKey
 * decides whether it may be stored.
 */
export async function verifyPrivateKey(binary: Uint8Array, email: string, now: Date): Promise<ValidatedKey> {
  let keys: openpgp.Key[];
  try {
    keys = await (await loadOpenpgp()).readKeys({ binaryKeys: binary });
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
  // Decided from the key's own data rather than from OpenPGP.js's error texts, which are not an API.
  const { condition, at } = await conditionOf(key, now);
  if (condition !== 'revoked') {
    try {
      await key.verifyPrimaryKey(at);
    } catch (e) {
      throw new KeyRejectedError('The key has no valid self-signature', (e as Partial<Error> | null | undefined)?.message ?? '');
    }
  }
  await requireUserId(key, email, at);
  return { email, fingerprint: key.getFingerprint().toUpperCase(), privateKey: key.armor(), publicKey: key.toPublic().armor(), condition };
}

/** Revoked, expired (verified just before it expired), or valid now. */
async function conditionOf(key: openpgp.PrivateKey, now: Date): Promise<{ condition: KeyCondition; at: Date }> {
  if (await key.isRevoked(undefined, undefined, now)) return { condition: 'revoked', at: now };
  let expiration: Date | number | null;
  try {
    expiration = await key.getExpirationTime();
  } catch (e) {
    throw new KeyRejectedError('The key has no valid self-signature', (e as Partial<Error> | null | undefined)?.message ?? '');
  }
  if (expiration instanceof Date && expiration.getTime() <= now.getTime()) return { condition: 'expired', at: new Date(expiration.getTime() - 1000) };
  return { condition: 'valid', at: now };
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
