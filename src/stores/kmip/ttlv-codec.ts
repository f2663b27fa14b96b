/**
 * KMIP's binary Tag-Type-Length-Value encoding (KMIP 1.0 spec, section 9.1). Every item is a 3-byte
 * tag, a 1-byte type, a 4-byte big-endian length of the value, then the value padded with zero
 * bytes to a multiple of 8. A Structure's value is the concatenation of its items.
 *
 * decodeTtlv() refuses anything that does not follow these rules with a TtlvDecodeError; it never
 * reads past its input, never recurses without bound and never throws anything else.
 */

/** The item types of KMIP 1.0 section 9.1.1.2, by their type byte. */
export const TtlvType = {
  Structure: 0x01,
  Integer: 0x02,
  LongInteger: 0x03,
  BigInteger: 0x04,
  Enumeration: 0x05,
  Boolean: 0x06,
  TextString: 0x07,
  ByteString: 0x08,
  DateTime: 0x09,
  Interval: 0x0a,
} as const;
export type TtlvTypeName = keyof typeof TtlvType;

/** One decoded or to-be-encoded item. `tag` is the 24-bit tag, e.g. 0x420078 (Request Message). */
export type TtlvItem =
  | { readonly tag: number; readonly type: 'Structure'; readonly value: readonly TtlvItem[] }
  /** Signed 32-bit. */
  | { readonly tag: number; readonly type: 'Integer'; readonly value: number }
  /** Signed 64-bit. */
  | { readonly tag: number; readonly type: 'LongInteger'; readonly value: bigint }
  /** Signed, two's complement, any length (encoded in a multiple of 8 bytes). */
  | { readonly tag: number; readonly type: 'BigInteger'; readonly value: bigint }
  /** Unsigned 32-bit. */
  | { readonly tag: number; readonly type: 'Enumeration'; readonly value: number }
  | { readonly tag: number; readonly type: 'Boolean'; readonly value: boolean }
  | { readonly tag: number; readonly type: 'TextString'; readonly value: string }
  | { readonly tag: number; readonly type: 'ByteString'; readonly value: Uint8Array }
  /** Seconds since the POSIX epoch, signed 64-bit (section 9.1.1.4). */
  | { readonly tag: number; readonly type: 'DateTime'; readonly value: bigint }
  /** Seconds, unsigned 32-bit. */
  | { readonly tag: number; readonly type: 'Interval'; readonly value: number };

/** The input is not well-formed TTLV. The message names the offset, never the bytes. */
export class TtlvDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TtlvDecodeError';
  }
}

/** Deeper nesting than any KMIP 1.0 message needs; stops hostile input from exhausting the stack. */
const MAX_DEPTH = 32;
const HEADER_LENGTH = 8;
const TYPE_NAMES = new Map<number, TtlvTypeName>(Object.entries(TtlvType).map(([name, byte]) => [byte, name as TtlvTypeName]));
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const padded = (length: number) => Math.ceil(length / 8) * 8;

/** Encodes one item (usually a whole Request Message) into its wire form. */
export function encodeTtlv(item: TtlvItem): Buffer {
  const chunks: Buffer[] = [];
  encodeInto(item, chunks);
  return Buffer.concat(chunks);
}

function encodeInto(item: TtlvItem, out: Buffer[]): void {
  if (!Number.isInteger(item.tag) || item.tag < 0 || item.tag > 0xffffff) {
    throw new TypeError(`TTLV tag ${item.tag} is not a 3-byte value`);
  }
  const header = Buffer.alloc(HEADER_LENGTH);
  header.writeUIntBE(item.tag, 0, 3);
  header.writeUInt8(TtlvType[item.type], 3);
  out.push(header);
  let value: Buffer;
  switch (item.type) {
    case 'Structure': {
      const children: Buffer[] = [];
      for (const child of item.value) encodeInto(child, children);
      value = Buffer.concat(children);
      break;
    }
    case 'Integer':
      value = Buffer.alloc(4);
      value.writeInt32BE(checkRange(item.value, INT32_MIN, INT32_MAX, item));
      break;
    case 'Enumeration':
    case 'Interval':
      value = Buffer.alloc(4);
      value.writeUInt32BE(checkRange(item.value, 0, UINT32_MAX, item));
      break;
    case 'LongInteger':
    case 'DateTime':
      if (item.value < INT64_MIN || item.value > INT64_MAX) throw new TypeError(`${item.type} out of range`);
      value = Buffer.alloc(8);
      value.writeBigInt64BE(item.value);
      break;
    case 'BigInteger':
      value = encodeBigInteger(item.value);
      break;
    case 'Boolean':
      value = Buffer.alloc(8);
      value.writeBigUInt64BE(item.value ? 1n : 0n);
      break;
    case 'TextString':
      value = Buffer.from(item.value, 'utf8');
      break;
    case 'ByteString':
      value = Buffer.from(item.value.buffer, item.value.byteOffset, item.value.byteLength);
      break;
  }
  header.writeUInt32BE(value.length, 4);
  out.push(value);
  const padding = padded(value.length) - value.length;
  if (padding > 0) out.push(Buffer.alloc(padding));
}

function checkRange(value: number, min: number, max: number, item: TtlvItem): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`${item.type} value for tag 0x${item.tag.toString(16)} is out of range`);
  }
  return value;
}

/** Section 9.1.1.4: two's complement, big-endian, sign-extended to a multiple of 8 bytes. */
function encodeBigInteger(value: bigint): Buffer {
  let bytes = 8;
  while (value < -(1n << BigInt(bytes * 8 - 1)) || value >= 1n << BigInt(bytes * 8 - 1)) bytes += 8;
  let twos = BigInt.asUintN(bytes * 8, value);
  const out = Buffer.alloc(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(twos & 0xffn);
    twos >>= 8n;
  }
  return out;
}

function decodeBigInteger(bytes: Buffer): bigint {
  let unsigned = 0n;
  for (const b of bytes) unsigned = (unsigned << 8n) | BigInt(b);
  return BigInt.asIntN(bytes.length * 8, unsigned);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes exactly one item that fills the whole input (a complete message as read off the wire).
 * Throws TtlvDecodeError for truncated input, trailing bytes, unknown types, wrong fixed lengths,
 * non-zero padding, invalid UTF-8, non-0/1 booleans or excessive nesting.
 */
export function decodeTtlv(input: Uint8Array): TtlvItem {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const [item, end] = decodeAt(buf, 0, buf.length, 0);
  if (end !== buf.length) throw new TtlvDecodeError(`${buf.length - end} trailing bytes after the item at offset 0`);
  return item;
}

/**
 * The total length (header, value, padding) of the item whose 8-byte header starts `header`, for
 * framing a stream; undefined until 8 bytes are available.
 */
export function ttlvItemLength(header: Uint8Array): number | undefined {
  if (header.length < HEADER_LENGTH) return undefined;
  const view = Buffer.from(header.buffer, header.byteOffset, HEADER_LENGTH);
  return HEADER_LENGTH + padded(view.readUInt32BE(4));
}

function decodeAt(buf: Buffer, offset: number, limit: number, depth: number): [TtlvItem, number] {
  if (depth > MAX_DEPTH) throw new TtlvDecodeError(`structures nested deeper than ${MAX_DEPTH} levels at offset ${offset}`);
  if (limit - offset < HEADER_LENGTH) throw new TtlvDecodeError(`truncated item header at offset ${offset}`);
  const tag = buf.readUIntBE(offset, 3);
  const typeByte = buf.readUInt8(offset + 3);
  const length = buf.readUInt32BE(offset + 4);
  const type = TYPE_NAMES.get(typeByte);
  if (type === undefined) throw new TtlvDecodeError(`unknown item type 0x${typeByte.toString(16)} at offset ${offset}`);
  const start = offset + HEADER_LENGTH;
  const end = start + padded(length);
  if (end > limit) throw new TtlvDecodeError(`item at offset ${offset} claims ${length} bytes, beyond the end of its container`);
  for (let i = start + length; i < end; i++) {
    if (buf[i] !== 0) throw new TtlvDecodeError(`non-zero padding in the item at offset ${offset}`);
  }
  const fixed = (expected: number) => {
    if (length !== expected) throw new TtlvDecodeError(`${type} at offset ${offset} has length ${length}, not ${expected}`);
  };
  const value = buf.subarray(start, start + length);
  switch (type) {
    case 'Structure': {
      const children: TtlvItem[] = [];
      let at = start;
      while (at < start + length) {
        const [child, next] = decodeAt(buf, at, start + length, depth + 1);
        children.push(child);
        at = next;
      }
      return [{ tag, type, value: children }, end];
    }
    case 'Integer':
      fixed(4);
      return [{ tag, type, value: value.readInt32BE(0) }, end];
    case 'Enumeration':
    case 'Interval':
      fixed(4);
      return [{ tag, type, value: value.readUInt32BE(0) }, end];
    case 'LongInteger':
    case 'DateTime':
      fixed(8);
      return [{ tag, type, value: value.readBigInt64BE(0) }, end];
    case 'BigInteger':
      if (length === 0 || length % 8 !== 0) throw new TtlvDecodeError(`BigInteger at offset ${offset} has length ${length}, not a multiple of 8`);
      return [{ tag, type, value: decodeBigInteger(value) }, end];
    case 'Boolean': {
      fixed(8);
      const raw = value.readBigUInt64BE(0);
      if (raw > 1n) throw new TtlvDecodeError(`Boolean at offset ${offset} is neither 0 nor 1`);
      return [{ tag, type, value: raw === 1n }, end];
    }
    case 'TextString':
      try {
        return [{ tag, type, value: UTF8.decode(value) }, end];
      } catch {
        throw new TtlvDecodeError(`TextString at offset ${offset} is not valid UTF-8`);
      }
    case 'ByteString':
      return [{ tag, type, value: Uint8Array.from(value) }, end];
  }
}
