import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { TtlvDecodeError, decodeTtlv, encodeTtlv, ttlvItemLength, type TtlvItem } from '../../../src/stores/kmip/ttlv-codec.js';

const hex = (s: string) => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');

/** The encoding examples of KMIP 1.0 section 9.1.2, byte for byte. */
const SPEC_EXAMPLES: [string, TtlvItem, string][] = [
  ['Integer 8', { tag: 0x420020, type: 'Integer', value: 8 }, '42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00'],
  ['Long Integer', { tag: 0x420020, type: 'LongInteger', value: 123456789000000000n }, '42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00'],
  ['Big Integer', { tag: 0x420020, type: 'BigInteger', value: 1234567890000000000000000000n }, '42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00'],
  ['Enumeration 255', { tag: 0x420020, type: 'Enumeration', value: 255 }, '42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00'],
  ['Boolean true', { tag: 0x420020, type: 'Boolean', value: true }, '42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01'],
  ['Text String', { tag: 0x420020, type: 'TextString', value: 'Hello World' }, '42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00'],
  ['Byte String', { tag: 0x420020, type: 'ByteString', value: Uint8Array.from([1, 2, 3]) }, '42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00'],
  ['Date-Time', { tag: 0x420020, type: 'DateTime', value: 0x47da67f8n }, '42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8'],
  ['Interval 10 days', { tag: 0x420020, type: 'Interval', value: 864000 }, '42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00'],
  [
    'Structure',
    { tag: 0x420020, type: 'Structure', value: [{ tag: 0x420004, type: 'Enumeration', value: 254 }, { tag: 0x420005, type: 'Integer', value: 255 }] },
    '42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00',
  ],
];

describe('TTLV codec', () => {
  for (const [name, item, wire] of SPEC_EXAMPLES) {
    it(`encodes and decodes the spec example: ${name}`, () => {
      assert.deepEqual(encodeTtlv(item), hex(wire));
      assert.deepEqual(decodeTtlv(hex(wire)), item);
    });
  }

  it('round-trips every type at its limits, nested', () => {
    const item: TtlvItem = {
      tag: 0x420078,
      type: 'Structure',
      value: [
        { tag: 0x420001, type: 'Integer', value: -(2 ** 31) },
        { tag: 0x420001, type: 'Integer', value: 2 ** 31 - 1 },
        { tag: 0x420002, type: 'LongInteger', value: -(2n ** 63n) },
        { tag: 0x420002, type: 'LongInteger', value: 2n ** 63n - 1n },
        { tag: 0x420003, type: 'BigInteger', value: -1n },
        { tag: 0x420003, type: 'BigInteger', value: 0n },
        { tag: 0x420003, type: 'BigInteger', value: -(2n ** 200n) + 12345n },
        { tag: 0x420003, type: 'BigInteger', value: 2n ** 63n },
        { tag: 0x420004, type: 'Enumeration', value: 0xffffffff },
        { tag: 0x420005, type: 'Boolean', value: false },
        { tag: 0x420006, type: 'TextString', value: '' },
        { tag: 0x420006, type: 'TextString', value: 'ünïcødé ✓ 8 bytes!' },
        { tag: 0x420007, type: 'ByteString', value: new Uint8Array(0) },
        { tag: 0x420007, type: 'ByteString', value: Uint8Array.from(randomBytes(4099)) },
        { tag: 0x420008, type: 'DateTime', value: -1n },
        { tag: 0x420009, type: 'Interval', value: 0 },
        { tag: 0x42000a, type: 'Structure', value: [] },
        { tag: 0xffffff, type: 'Structure', value: [{ tag: 0, type: 'Structure', value: [{ tag: 1, type: 'TextString', value: 'deep' }] }] },
      ],
    };
    const wire = encodeTtlv(item);
    assert.equal(wire.length % 8, 0);
    assert.deepEqual(decodeTtlv(wire), item);
    assert.deepEqual(encodeTtlv(decodeTtlv(wire)), wire);
  });

  it('pads every value to a multiple of 8 with zero bytes and writes the unpadded length big-endian', () => {
    for (let n = 0; n <= 17; n++) {
      const wire = encodeTtlv({ tag: 0x420055, type: 'ByteString', value: new Uint8Array(n).fill(0xab) });
      assert.equal(wire.length, 8 + Math.ceil(n / 8) * 8);
      assert.equal(wire.readUInt32BE(4), n);
      assert.ok(wire.subarray(8 + n).every((b) => b === 0));
    }
    const big = encodeTtlv({ tag: 0x420055, type: 'ByteString', value: new Uint8Array(0x010203) });
    assert.deepEqual([...big.subarray(4, 8)], [0x00, 0x01, 0x02, 0x03]);
    assert.equal(ttlvItemLength(big.subarray(0, 8)), 8 + 0x010208);
    assert.equal(ttlvItemLength(big.subarray(0, 7)), undefined);
  });

  it('refuses values the type cannot hold, as programmer errors', () => {
    assert.throws(() => encodeTtlv({ tag: 1, type: 'Integer', value: 2 ** 31 }), TypeError);
    assert.throws(() => encodeTtlv({ tag: 1, type: 'Integer', value: 1.5 }), TypeError);
    assert.throws(() => encodeTtlv({ tag: 1, type: 'Enumeration', value: -1 }), TypeError);
    assert.throws(() => encodeTtlv({ tag: 1, type: 'LongInteger', value: 2n ** 63n }), TypeError);
    assert.throws(() => encodeTtlv({ tag: 0x1000000, type: 'Boolean', value: true }), TypeError);
  });

  const malformed: [string, string][] = [
    ['an empty input', ''],
    ['a truncated header', '42 00 20 02 00 00 00'],
    ['a length beyond the input', '42 00 20 | 02 | 00 00 00 04 | 00 00 00 08'],
    ['a huge length', '42 00 20 | 08 | FF FF FF FF | 00 00 00 00 00 00 00 00'],
    ['an unknown type', '42 00 20 | 0B | 00 00 00 04 | 00 00 00 08 00 00 00 00'],
    ['type zero', '42 00 20 | 00 | 00 00 00 00'],
    ['an Integer of length 8', '42 00 20 | 02 | 00 00 00 08 | 00 00 00 08 00 00 00 00'],
    ['a Long Integer of length 4', '42 00 20 | 03 | 00 00 00 04 | 00 00 00 08 00 00 00 00'],
    ['a Big Integer of length 5', '42 00 20 | 04 | 00 00 00 05 | 01 02 03 04 05 00 00 00'],
    ['an empty Big Integer', '42 00 20 | 04 | 00 00 00 00'],
    ['a Boolean of 2', '42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 02'],
    ['non-zero padding', '42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 01'],
    ['invalid UTF-8', '42 00 20 | 07 | 00 00 00 02 | C3 28 00 00 00 00 00 00'],
    ['trailing bytes', '42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01 | 00 00 00 00 00 00 00 00'],
    ['a child overrunning its structure', '42 00 20 | 01 | 00 00 00 08 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00'],
    ['a structure whose length is not a multiple of 8', '42 00 20 | 01 | 00 00 00 04 | 42 00 04 05 00 00 00 00'],
  ];
  for (const [name, wire] of malformed) {
    it(`refuses ${name} with a TtlvDecodeError`, () => {
      assert.throws(() => decodeTtlv(hex(wire)), TtlvDecodeError);
    });
  }

  it('refuses nesting deeper than a KMIP message needs, without exhausting the stack', () => {
    let item: TtlvItem = { tag: 1, type: 'Integer', value: 1 };
    for (let i = 0; i < 40; i++) item = { tag: 1, type: 'Structure', value: [item] };
    assert.throws(() => decodeTtlv(encodeTtlv(item)), TtlvDecodeError);
    // A length field claiming a million nested empty headers is refused by the same limit.
    const hostile = Buffer.alloc(8 * 100_000);
    for (let i = 0; i < 100_000; i++) {
      hostile.writeUIntBE(0x420001, i * 8, 3);
      hostile.writeUInt8(1, i * 8 + 3);
      hostile.writeUInt32BE(hostile.length - (i + 1) * 8, i * 8 + 4);
    }
    assert.throws(() => decodeTtlv(hostile), TtlvDecodeError);
  });

  it('never throws anything but TtlvDecodeError on random and mutated input', () => {
    const valid = encodeTtlv({ tag: 0x420078, type: 'Structure', value: SPEC_EXAMPLES.map(([, item]) => item) });
    for (let i = 0; i < 5000; i++) {
      const input = i % 2 === 0 ? randomBytes(i % 97) : Buffer.from(valid);
      if (i % 2 === 1) for (let m = 0; m < 1 + (i % 4); m++) input[(i * 7919 + m * 104729) % input.length] = randomBytes(1)[0]!;
      try {
        decodeTtlv(input);
      } catch (e) {
        assert.ok(e instanceof TtlvDecodeError, `unexpected ${String(e)}`);
      }
    }
  });
});
