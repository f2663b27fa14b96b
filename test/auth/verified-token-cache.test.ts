import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VerifiedTokenCache } from '../../src/auth/verified-token-cache.js';

describe('verified token cache', () => {
  const identity = { email: 'a@example.com', hostedDomain: undefined };

  it('serves a token until it expires, and nothing for a token that differs by one character', () => {
    const cache = new VerifiedTokenCache();
    cache.set('header.payload.signature', identity, 10_000);
    assert.equal(cache.get('header.payload.signature', 9_999), identity);
    assert.equal(cache.get('header.payload.signaturf', 9_999), undefined);
    assert.equal(cache.get('header.payload.signature', 10_000), undefined);
    assert.equal(cache.get('header.payload.signature', 1), undefined, 'an expired entry is dropped');
  });

  it('stays within its bound, dropping the oldest entries', () => {
    const cache = new VerifiedTokenCache(3);
    for (const t of ['t1', 't2', 't3', 't4']) cache.set(t, identity, Infinity);
    assert.equal(cache.get('t1'), undefined);
    assert.equal(cache.get('t4'), identity);
    assert.equal(cache.get('t2'), identity);
  });
});
