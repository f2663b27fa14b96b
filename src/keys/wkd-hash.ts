import { createHash } from 'node:crypto';
import { lowercaseAscii } from './email-address.js';

/** The z-base-32 alphabet (https://philzimmermann.com/docs/human-oriented-base-32-encoding.txt). */
const Z_BASE_32 = 'ybndrfg8ejkmcpqxot1uwisza345h769';

/** z-base-32 encoding of `bytes`, most significant bit first, without padding. */
export function zBase32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += Z_BASE_32.charAt((buffer >>> (bits - 5)) & 31);
      bits -= 5;
    }
  }
  if (bits > 0) out += Z_BASE_32.charAt((buffer << (5 - bits)) & 31);
  return out;
}

/** A WKD hash is the z-base-32 SHA-1 digest: 160 bits, 32 characters. */
export const WKD_HASH_PATTERN = /^[ybndrfg8ejkmcpqxot1uwisza345h769]{32}$/;

/**
 * The Web Key Directory hash of a local part (draft-koch-openpgp-webkey-service, section 3.1):
 * z-base-32 of the SHA-1 of the lowercased local part. "Lowercased" is ASCII-only here, as GnuPG
 * (the draft's reference implementation) does it: `Ü` stays `Ü`.
 */
export function wkdHash(localPart: string): string {
  return zBase32(createHash('sha1').update(lowercaseAscii(localPart), 'utf8').digest());
}

/**
 * Whether `hash` is the WKD hash of `localPart`, ASCII-lowercased only: the one email rule
 * (email-address.ts) lowercases nothing else, so no Unicode-lowercased hash names a mailbox.
 */
export function isWkdHashOf(hash: string, localPart: string): boolean {
  return hash === wkdHash(localPart);
}
