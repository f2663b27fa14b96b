import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientOrigin, trustedProxies, trustedProxyProblem } from '../../src/http/client-address.js';

describe('the client address behind trusted proxies', () => {
  const trusted = trustedProxies(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
  const origin = (peer: string, xff?: string, proto?: string) => clientOrigin(trusted, peer, 'http', xff, proto);

  it('ignores X-Forwarded-For and X-Forwarded-Proto from a peer that is not trusted', () => {
    assert.deepEqual(origin('203.0.113.9', '198.51.100.1', 'https'), { address: '203.0.113.9', protocol: 'http' });
    assert.deepEqual(origin('::ffff:203.0.113.9', '198.51.100.1'), { address: '203.0.113.9', protocol: 'http' });
    assert.deepEqual(clientOrigin(trustedProxies([]), '127.0.0.1', 'https', '198.51.100.1', 'http'), { address: '127.0.0.1', protocol: 'https' });
  });

  it('walks X-Forwarded-For from the right, skipping trusted hops; the first untrusted one is the client', () => {
    assert.deepEqual(origin('127.0.0.1', '198.51.100.1', 'https'), { address: '198.51.100.1', protocol: 'https' });
    // The client itself wrote a spoofed first entry: the proxies appended after it, so it is never reached.
    assert.equal(origin('127.0.0.1', '192.0.2.66, 198.51.100.1, 10.1.2.3').address, '198.51.100.1');
    assert.equal(origin('::ffff:127.0.0.1', '198.51.100.1').address, '198.51.100.1');
    assert.equal(origin('fd00::5', '2001:db8::7, fd12::1').address, '2001:db8::7');
    assert.equal(origin('127.0.0.1', '[2001:db8::7]:4711').address, '2001:db8::7');
    assert.equal(origin('127.0.0.1', '198.51.100.1:4711').address, '198.51.100.1');
  });

  it('stops at the last good address when a hop is not an address, and when every hop is trusted', () => {
    assert.equal(origin('127.0.0.1', 'alice@example.com, 10.0.0.1').address, '10.0.0.1');
    assert.equal(origin('127.0.0.1', '10.0.0.2, 10.0.0.1').address, '10.0.0.2');
    assert.equal(origin('127.0.0.1', '').address, '127.0.0.1');
    assert.equal(origin('127.0.0.1').address, '127.0.0.1');
  });

  it('believes only http or https from X-Forwarded-Proto, the nearest proxy\'s (rightmost) value', () => {
    assert.equal(origin('127.0.0.1', '198.51.100.1', 'http, https').protocol, 'https');
    assert.equal(origin('127.0.0.1', '198.51.100.1', 'gopher').protocol, 'http');
  });

  it('accepts addresses and CIDRs of both families and names what is wrong with the others', () => {
    for (const ok of ['127.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', 'fd00::/8', '2001:db8::/128']) assert.equal(trustedProxyProblem(ok), undefined, ok);
    for (const bad of ['localhost', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/x', '300.1.1.1', '']) {
      assert.match(trustedProxyProblem(bad) ?? '', /expected|prefix length/, bad);
    }
  });
});
