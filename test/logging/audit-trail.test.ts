import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { audit } from '../../src/logging/audit-trail.js';
import { MemoryLogger } from '../support/memory-logger.js';

describe('audit trail', () => {
  it('writes who, which keys, from where and the result, at info, keeping the request id of the child logger', () => {
    const logger = new MemoryLogger();
    audit(logger.child({ requestId: 'req-42' }), {
      event: 'private-key.write',
      email: 'Alice@Example.com',
      fingerprints: ['a1b2 c3d4 e5f6 0718 9a0b  c1d2 e3f4 a5b6 c7d8 e9f0'],
      clientAddress: '10.0.0.7',
      userAgent: 'FlowCrypt/8.5\r\nX-Injected: 1',
      status: 200,
      change: 'added',
    });
    assert.equal(logger.entries.length, 1);
    const [entry] = logger.entries;
    assert.equal(entry?.level, 'info');
    assert.equal(entry?.message, 'private-key.write');
    assert.deepEqual(entry?.fields, {
      requestId: 'req-42',
      audit: 'private-key.write',
      outcome: 'success',
      status: 200,
      code: undefined,
      change: 'added',
      email: 'alice@example.com',
      fingerprints: ['A1B2C3D4E5F607189A0BC1D2E3F4A5B6C7D8E9F0'],
      clientAddress: '10.0.0.7',
      userAgent: 'FlowCrypt/8.5??X-Injected: 1',
    });
  });

  it('says when a written key is revoked or expired (an update of a held key)', () => {
    const logger = new MemoryLogger();
    const base = { event: 'private-key.write' as const, email: 'alice@example.com', fingerprints: ['A1B2C3D4E5F607189A0BC1D2E3F4A5B6C7D8E9F0'], clientAddress: '::1', userAgent: undefined, status: 200, change: 'updated' as const };
    audit(logger, { ...base, keyState: 'revoked' });
    audit(logger, { ...base, keyState: 'expired' });
    audit(logger, base);
    assert.deepEqual(logger.entries.map((e) => e.fields.keyState), ['revoked', 'expired', undefined]);
    assert.equal('keyState' in logger.entries[2]!.fields, false);
  });

  it('records refusals and errors, and never takes anything but a fingerprint for one', () => {
    const logger = new MemoryLogger();
    const base = { email: undefined, clientAddress: '::1', userAgent: undefined };
    audit(logger, { ...base, event: 'private-key.read', fingerprints: [], status: 401, code: 'ERR_TOKEN_EXPIRED' });
    audit(logger, { ...base, event: 'private-key.read', fingerprints: [], status: 503, code: 'ERR_STORE_UNAVAILABLE' });
    audit(logger, { ...base, event: 'private-key.write', fingerprints: ['-----BEGIN PGP PRIVATE KEY BLOCK-----\nxcLYBF...'], status: 400 });
    assert.deepEqual(logger.entries.map((e) => [e.fields.outcome, e.fields.status, e.fields.code]), [
      ['refused', 401, 'ERR_TOKEN_EXPIRED'],
      ['error', 503, 'ERR_STORE_UNAVAILABLE'],
      ['refused', 400, undefined],
    ]);
    assert.deepEqual(logger.entries[2]?.fields.fingerprints, ['[not a fingerprint]']);
    assert.ok(!JSON.stringify(logger.entries).includes('BEGIN PGP'));
  });

  it("never writes a lookalike's email as its victim's: refused emails are escaped as given", () => {
    const logger = new MemoryLogger();
    const base = { clientAddress: '::1', userAgent: undefined, event: 'private-key.import', fingerprints: [], status: 400 } as const;
    audit(logger, { ...base, email: '\u212Aate@example.com' });
    audit(logger, { ...base, email: 'kate\x1b[2J@example.com' });
    assert.deepEqual(logger.entries.map((e) => e.fields.email), ['\\u212Aate@example.com', 'kate\\u001B[2J@example.com']);
  });
});
