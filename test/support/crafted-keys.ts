import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import * as openpgp from 'openpgp';

/**
 * Hostile OpenPGP keys, built packet by packet (RFC 9580, sections 4-5) as an attacker would: any
 * modulus, exponent and hash, signatures whose digest prefix is right (so an implementation goes on
 * to the public-key operation) but whose value is not. Real keys made with OpenPGP.js are then
 * rearranged with its packet classes.
 */

/** An OpenPGP packet with a new-format header (RFC 9580, section 4.2.1). */
export function packet(tag: number, body: Uint8Array): Buffer {
  const n = body.length;
  const length = n < 192 ? [n] : n < 8384 ? [((n - 192) >> 8) + 192, (n - 192) & 0xff] : [0xff, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([0xc0 | tag, ...length]), body]);
}

/** A multiprecision integer (RFC 9580, section 3.2) of exactly `bits` bits, random below the top bit, odd when asked. */
export function mpi(bits: number, options: { odd?: boolean } = {}): Buffer {
  const bytes = randomBytes(Math.ceil(bits / 8));
  const top = (bits - 1) % 8;
  bytes[0] = (bytes[0]! & ((1 << top) - 1)) | (1 << top);
  if (options.odd) bytes[bytes.length - 1]! |= 1;
  return Buffer.concat([Buffer.from([bits >> 8, bits & 0xff]), bytes]);
}

const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);

/** OpenPGP hash algorithm ids (RFC 9580, section 9.5) and their node:crypto names. */
const HASHES = { sha1: [2, 'sha1'], sha256: [8, 'sha256'], sha224: [11, 'sha224'] } as const;

/** A v4 RSA secret key packet's pieces: the public body (what fingerprints and signatures hash) and the packet. */
export function rsaKeyPacket(options: { modulusBits: number; exponent?: Buffer; created?: Date }): { publicBody: Buffer; packet: Buffer; keyId: Buffer; fingerprint: Buffer } {
  const created = Math.floor((options.created ?? new Date(Date.now() - 86400_000)).getTime() / 1000);
  const publicBody = Buffer.concat([
    Buffer.from([4]),
    u32(created),
    Buffer.from([1]),
    mpi(options.modulusBits, { odd: true }),
    options.exponent ?? Buffer.from([0, 17, 1, 0, 1]),
  ]);
  const half = Math.ceil(options.modulusBits / 2);
  const secret = Buffer.concat([mpi(options.modulusBits), mpi(half), mpi(half), mpi(half)]);
  let sum = 0;
  for (const b of secret) sum = (sum + b) & 0xffff;
  const body = Buffer.concat([publicBody, Buffer.from([0]), secret, Buffer.from([sum >> 8, sum & 0xff])]);
  const fingerprint = createHash('sha1').update(Buffer.from([0x99, publicBody.length >> 8, publicBody.length & 0xff])).update(publicBody).digest();
  return { publicBody, packet: packet(5, body), keyId: fingerprint.subarray(12), fingerprint };
}

/**
 * A v4 signature over `userId` on the key (RFC 9580, section 5.2.4): type 0x13 (positive
 * certification) or 0x30 (certification revocation), claiming RSA and `hash`, with the right digest
 * prefix. Signed by `signer` when given (PKCS#1 v1.5, as OpenPGP's RSA signatures are), otherwise
 * a random value of `signatureBits` bits that fails verification only after the RSA operation.
 */
export function rsaCertification(
  key: { publicBody: Buffer; keyId: Buffer; fingerprint: Buffer },
  userId: Buffer,
  hash: keyof typeof HASHES,
  signatureBits: number,
  options: { type?: 0x13 | 0x30; signer?: KeyObject; created?: Date } = {},
): Buffer {
  const [hashId, hashName] = HASHES[hash];
  const type = options.type ?? 0x13;
  const subpacket = (id: number, body: Buffer) => Buffer.concat([Buffer.from([body.length + 1, id]), body]);
  const hashed = Buffer.concat([
    subpacket(2, u32(Math.floor((options.created ?? new Date(Date.now() - 3600_000)).getTime() / 1000))),
    subpacket(33, Buffer.concat([Buffer.from([4]), key.fingerprint])),
    ...(type === 0x13 ? [subpacket(27, Buffer.from([0x03]))] : []),
  ]);
  const unhashed = subpacket(16, key.keyId);
  const head = Buffer.concat([Buffer.from([4, type, 1, hashId, hashed.length >> 8, hashed.length & 0xff]), hashed]);
  const signed = Buffer.concat([
    Buffer.from([0x99, key.publicBody.length >> 8, key.publicBody.length & 0xff]),
    key.publicBody,
    Buffer.from([0xb4]),
    u32(userId.length),
    userId,
    head,
    Buffer.from([4, 0xff]),
    u32(head.length),
  ]);
  const digest = createHash(hashName).update(signed).digest();
  const value = options.signer === undefined ? mpi(signatureBits) : mpiOf(sign(hashName, signed, options.signer));
  return packet(2, Buffer.concat([head, Buffer.from([unhashed.length >> 8, unhashed.length & 0xff]), unhashed, digest.subarray(0, 2), value]));
}

/** An MPI of a big-endian unsigned integer, leading zero octets dropped. */
function mpiOf(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i += 1;
  const trimmed = bytes.subarray(i);
  const bits = (trimmed.length - 1) * 8 + (32 - Math.clz32(trimmed[0]!));
  return Buffer.concat([Buffer.from([bits >> 8, bits & 0xff]), trimmed]);
}

/**
 * The most verification work a key can ask for within the structure limits: a real RSA key (made
 * by node:crypto, with the exponent given: up to 2^32 - 1) whose one user id `valid` is properly
 * self-signed, then `users` user ids for `email` each carrying `selfCertifications` self-signatures
 * and `revocations` revocations that all fail, only after the RSA operation. OpenPGP.js checks every
 * revocation against every self-signature of a user id it verifies, and keeps no failed result.
 */
export function rsaVerificationWorkKey(
  email: string,
  options: { modulusBits: number; publicExponent: number; users: number; selfCertifications: number; revocations: number; valid?: string },
): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: options.modulusBits, publicExponent: options.publicExponent });
  const jwk = privateKey.export({ format: 'jwk' });
  const b = (v: string | undefined) => mpiOf(Buffer.from(v!, 'base64url'));
  const publicBody = Buffer.concat([Buffer.from([4]), u32(Math.floor(Date.now() / 1000) - 86400), Buffer.from([1]), b(jwk.n), b(jwk.e)]);
  // OpenPGP stores p < q and u = p^-1 mod q; JWK has qi = q^-1 mod p, so its q and p swap roles.
  const secret = Buffer.concat([b(jwk.d), b(jwk.q), b(jwk.p), b(jwk.qi)]);
  let sum = 0;
  for (const byte of secret) sum = (sum + byte) & 0xffff;
  const fingerprint = createHash('sha1').update(Buffer.from([0x99, publicBody.length >> 8, publicBody.length & 0xff])).update(publicBody).digest();
  const key = { publicBody, keyId: fingerprint.subarray(12), fingerprint };
  const packets = [packet(5, Buffer.concat([publicBody, Buffer.from([0]), secret, Buffer.from([sum >> 8, sum & 0xff])]))];
  const bits = options.modulusBits - 8;
  for (let u = 0; u < options.users; u++) {
    const userId = Buffer.from(`Work ${u} <${email}>`);
    packets.push(packet(13, userId));
    for (let i = 0; i < options.revocations; i++) packets.push(rsaCertification(key, userId, 'sha256', bits, { type: 0x30 }));
    for (let i = 0; i < options.selfCertifications; i++) packets.push(rsaCertification(key, userId, 'sha256', bits));
  }
  const validId = Buffer.from(`Valid <${options.valid ?? 'valid@example.org'}>`);
  packets.push(packet(13, validId), rsaCertification(key, validId, 'sha256', bits, { signer: privateKey }));
  return armorPrivateKey(packets);
}

/** An armored private key block of these packets. */
export function armorPrivateKey(packets: Uint8Array[]): string {
  return openpgp.armor(openpgp.enums.armor.privateKey, Buffer.concat(packets));
}

/**
 * The key of the report: a 16384-bit modulus, a 16384-bit public exponent and SHA-224
 * self-signatures, about 11 KB. OpenPGP.js verifies each signature with its BigInt arithmetic,
 * seconds of CPU each.
 */
export function rsaExponentBomb(email: string, signatures = 1): string {
  const key = rsaKeyPacket({ modulusBits: 16384, exponent: mpi(16384, { odd: true }) });
  const userId = Buffer.from(`Attacker <${email}>`);
  const sigs = Array.from({ length: signatures }, () => rsaCertification(key, userId, 'sha224', 16376));
  return armorPrivateKey([key.packet, packet(13, userId), ...sigs]);
}

/** A hand-made RSA key with one (unverifiable) self-signature: for the size, exponent and hash checks. */
export function craftedRsaKey(email: string, options: { modulusBits: number; exponent?: Buffer; hash?: keyof typeof HASHES }): string {
  const key = rsaKeyPacket(options);
  const userId = Buffer.from(`Crafted <${email}>`);
  return armorPrivateKey([key.packet, packet(13, userId), rsaCertification(key, userId, options.hash ?? 'sha256', options.modulusBits - 8)]);
}

/** A DSA key (algorithm 17, RFC 9580, section 5.5.5.2) of made-up numbers with a user id: only its algorithm matters. */
export function craftedDsaKey(email: string): string {
  const publicBody = Buffer.concat([Buffer.from([4]), u32(Math.floor(Date.now() / 1000) - 86400), Buffer.from([17]), mpi(2048, { odd: true }), mpi(256, { odd: true }), mpi(2047), mpi(2047)]);
  const x = mpi(255);
  let sum = 0;
  for (const b of x) sum = (sum + b) & 0xffff;
  return armorPrivateKey([packet(5, Buffer.concat([publicBody, Buffer.from([0]), x, Buffer.from([sum >> 8, sum & 0xff])])), packet(13, Buffer.from(`DSA <${email}>`))]);
}

/** A real key's packets with `copies` copies of its first user id's self-signature. */
export async function withRepeatedSelfSignature(armored: string, copies: number): Promise<string> {
  const key = await openpgp.readPrivateKey({ armoredKey: armored });
  const out = new openpgp.PacketList<openpgp.AnyPacket>();
  let repeated = false;
  for (const p of key.toPacketList()) {
    out.push(p);
    if (!repeated && p instanceof openpgp.SignaturePacket && p.signatureType === openpgp.enums.signature.certPositive) {
      for (let i = 1; i < copies; i++) out.push(p);
      repeated = true;
    }
  }
  return openpgp.armor(openpgp.enums.armor.privateKey, out.write());
}

/** A real key with a user attribute packet (a JPEG photo id, RFC 9580, section 5.12.1) appended after its user ids. */
export async function withUserAttribute(armored: string): Promise<string> {
  const key = await openpgp.readPrivateKey({ armoredKey: armored });
  const image = Buffer.concat([Buffer.from([0x10, 0x00, 0x01, 0x01]), Buffer.alloc(12), Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(100)]);
  // The subpacket length counts its type octet; under 192 it takes one octet (section 5.2.3.7).
  const attribute = packet(17, Buffer.concat([Buffer.from([image.length + 1, 1]), image]));
  const packets = key.toPacketList();
  const firstSubkey = packets.findIndex((p) => p instanceof openpgp.SecretSubkeyPacket);
  const before = new openpgp.PacketList<openpgp.AnyPacket>();
  const after = new openpgp.PacketList<openpgp.AnyPacket>();
  packets.forEach((p, i) => (i < firstSubkey ? before : after).push(p));
  return openpgp.armor(openpgp.enums.armor.privateKey, Buffer.concat([before.write(), attribute, after.write()]));
}
