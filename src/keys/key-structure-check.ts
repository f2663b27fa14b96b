import type * as openpgp from 'openpgp';
import { KeyRejectedError } from '../errors.js';
import { loadOpenpgp } from './load-openpgp.js';

/** Largest binary (dearmored) key accepted: real keys (RSA 4096, a few user ids and subkeys) take 2-12 KB. */
export const MAX_KEY_BYTES = 64 * 1024;
/** Most user ids on one key; the apps make one, long-lived keys gather a handful. */
export const MAX_USER_IDS = 32;
/** Most subkeys on one key; the apps make one, long-lived keys gather a few rotated ones. */
export const MAX_SUBKEYS = 16;
/** Most signature packets on one component (the primary key, a user id, a subkey): self-signatures, revocations and third-party certifications. */
export const MAX_SIGNATURES_PER_COMPONENT = 32;
/** Most signature packets on the whole key, counted as sent (before duplicates are removed). */
export const MAX_SIGNATURES = 64;
/** Smallest RSA modulus accepted, in bits. */
export const MIN_RSA_BITS = 2048;
/**
 * Largest RSA modulus accepted, in bits: the apps make 2048-4096, GnuPG at most 4096 without
 * `--enable-large-rsa`; 8192 leaves room for the rare hand-made key. Public operations grow with its square.
 */
export const MAX_RSA_BITS = 8192;
/** Longest RSA public exponent, in bits (odd values up to 2^32 - 1): every implementation uses 65537 (17 bits); the cost of a verification grows with it. */
export const MAX_RSA_EXPONENT_BITS = 32;
/** Public-key algorithms accepted (OpenPGP.js names): RSA and the elliptic-curve algorithms, never DSA or ElGamal. */
const ACCEPTED_ALGORITHMS = new Set(['rsaEncryptSign', 'rsaEncrypt', 'rsaSign', 'ecdsa', 'eddsaLegacy', 'ecdh', 'ed25519', 'x25519', 'ed448', 'x448']);
/** Elliptic curves accepted (OpenPGP.js names). */
const ACCEPTED_CURVES = new Set(['ed25519Legacy', 'curve25519Legacy', 'nistP256', 'nistP384', 'nistP521', 'brainpoolP256r1', 'brainpoolP384r1', 'brainpoolP512r1']);
/**
 * Hash algorithms accepted in RSA signatures: those Node verifies natively. OpenPGP.js verifies
 * RSA signatures over any other hash (SHA-224, SHA3) with its JavaScript BigInt arithmetic, up to
 * 20 times slower; no implementation makes RSA self-signatures with them by default.
 */
const ACCEPTED_RSA_SIGNATURE_HASHES = new Set(['sha1', 'sha256', 'sha384', 'sha512']);

/** Packet tags (RFC 9580, section 5) that start a component of a transferable key. */
const PRIMARY_KEY_TAGS = new Set([5, 6]);
const SUBKEY_TAGS = new Set([7, 14]);
const USER_ID_TAG = 13;
const USER_ATTRIBUTE_TAG = 17;
const SIGNATURE_TAG = 2;

/**
 * The checks a key must pass before any of its signatures is verified: each bounds what the
 * verification would cost (RSA sizes, algorithms, how many components and signatures), so a crafted
 * key is refused in milliseconds instead of holding a CPU for minutes. Reads the packets without
 * verifying anything and returns the key with byte-identical signature packets of a component kept
 * once (clients and keyservers have sent hundreds of copies of one self-signature).
 */
export async function checkKeyStructure(binary: Uint8Array): Promise<Uint8Array> {
  if (binary.length > MAX_KEY_BYTES) {
    throw new KeyRejectedError('The private key is too large', `A key may take at most ${MAX_KEY_BYTES} bytes (unarmored); this one takes ${binary.length}`);
  }
  const pgp = await loadOpenpgp();
  let keys: openpgp.Key[];
  try {
    // Parsing only: OpenPGP.js verifies signatures when asked, never while reading.
    keys = await pgp.readKeys({ binaryKeys: binary });
  } catch {
    throw new KeyRejectedError('Not a valid OpenPGP private key');
  }
  if (keys.length !== 1) throw new KeyRejectedError(`Exactly one private key is expected, found ${keys.length}`);
  const key = keys[0]!;
  requireAlgorithm(pgp, key.keyPacket);
  if (key.users.some((u) => u.userAttribute !== null)) {
    throw new KeyRejectedError('User attributes (photo ids) are not accepted', 'Remove the photo id from the key and submit it again');
  }
  if (key.users.length > MAX_USER_IDS) throw new KeyRejectedError(`A key may have at most ${MAX_USER_IDS} user ids, this one has ${key.users.length}`);
  if (key.subkeys.length > MAX_SUBKEYS) throw new KeyRejectedError(`A key may have at most ${MAX_SUBKEYS} subkeys, this one has ${key.subkeys.length}`);
  for (const subkey of key.subkeys) requireAlgorithm(pgp, subkey.keyPacket);
  return withoutDuplicateSignatures(pgp, key.toPacketList());
}

/** Counts signatures per component and in total, checks their hash, and drops byte-identical repeats within a component. */
function withoutDuplicateSignatures(pgp: typeof openpgp, packets: openpgp.PacketList<openpgp.AnyPacket>): Uint8Array {
  const kept = new pgp.PacketList<openpgp.AnyPacket>();
  let total = 0;
  let inComponent = 0;
  let seen = new Set<string>();
  for (const packet of packets) {
    const tag = packetTag(packet);
    if (tag !== SIGNATURE_TAG) {
      if (PRIMARY_KEY_TAGS.has(tag) || SUBKEY_TAGS.has(tag) || tag === USER_ID_TAG || tag === USER_ATTRIBUTE_TAG) {
        inComponent = 0;
        seen = new Set();
      }
      kept.push(packet);
      continue;
    }
    total += 1;
    inComponent += 1;
    if (inComponent > MAX_SIGNATURES_PER_COMPONENT) {
      throw new KeyRejectedError(`A key component may carry at most ${MAX_SIGNATURES_PER_COMPONENT} signatures; this key has more`);
    }
    if (total > MAX_SIGNATURES) throw new KeyRejectedError(`A key may carry at most ${MAX_SIGNATURES} signatures; this key has more`);
    const signature = packet as openpgp.SignaturePacket;
    if (isRsa(pgp, signature.publicKeyAlgorithm) && !ACCEPTED_RSA_SIGNATURE_HASHES.has(hashName(pgp, signature.hashAlgorithm))) {
      throw new KeyRejectedError(
        `RSA signatures made with ${hashName(pgp, signature.hashAlgorithm)} are not accepted`,
        'Sign the key with SHA-256 or a stronger SHA-2 hash',
      );
    }
    const bytes = Buffer.from(signature.write()).toString('base64');
    if (seen.has(bytes)) continue;
    seen.add(bytes);
    kept.push(packet);
  }
  return kept.write();
}

function requireAlgorithm(pgp: typeof openpgp, packet: openpgp.AnyKeyPacket): void {
  const info = packet.getAlgorithmInfo();
  const algorithm = info.algorithm;
  if (!ACCEPTED_ALGORITHMS.has(algorithm)) {
    throw new KeyRejectedError(`Key algorithm ${algorithm} is not accepted`, 'Use RSA of 2048 to 8192 bits or a modern elliptic curve');
  }
  if (info.curve !== undefined && !ACCEPTED_CURVES.has(info.curve)) {
    throw new KeyRejectedError(`Elliptic curve ${info.curve} is not accepted`);
  }
  if (!isRsa(pgp, packet.algorithm)) return;
  const { n, e } = packet.publicParams as { n: Uint8Array; e: Uint8Array };
  const bits = bitLength(n);
  if (bits < MIN_RSA_BITS) throw new KeyRejectedError(`RSA keys must have at least ${MIN_RSA_BITS} bits, this one has ${bits}`);
  if (bits > MAX_RSA_BITS) throw new KeyRejectedError(`RSA keys may have at most ${MAX_RSA_BITS} bits, this one has ${bits}`);
  // RFC 8017, section 3.1: 3 <= e < n, and e must be odd to be coprime with the even (p-1)(q-1).
  const exponentBits = bitLength(e);
  if (exponentBits > MAX_RSA_EXPONENT_BITS || exponentBits < 2 || (e[e.length - 1]! & 1) === 0) {
    throw new KeyRejectedError('The RSA public exponent is not accepted', `It must be odd, at least 3 and at most ${MAX_RSA_EXPONENT_BITS} bits long (65537 is usual)`);
  }
}

function isRsa(pgp: typeof openpgp, algorithm: openpgp.enums.publicKey | null): boolean {
  const { rsaEncryptSign, rsaEncrypt, rsaSign } = pgp.enums.publicKey;
  return algorithm === rsaEncryptSign || algorithm === rsaEncrypt || algorithm === rsaSign;
}

function hashName(pgp: typeof openpgp, hash: openpgp.enums.hash | null): string {
  const name = hash === null ? undefined : (pgp.enums.read(pgp.enums.hash, hash) as string | undefined);
  return name ?? `hash ${String(hash)}`;
}

/** The tag of a parsed packet (each packet class carries it as a static field). */
function packetTag(packet: openpgp.AnyPacket): number {
  return (packet.constructor as { tag?: number }).tag ?? (packet as openpgp.UnparseablePacket).tag;
}

/** Significant bits of a big-endian unsigned integer, leading zero octets ignored (an MPI's stated length is not trusted). */
function bitLength(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i += 1;
  if (i === bytes.length) return 0;
  return (bytes.length - i - 1) * 8 + (32 - Math.clz32(bytes[i]!));
}
