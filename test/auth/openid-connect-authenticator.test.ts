import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import { OpenIdProvider } from '../../scripts/openid-provider.js';
import { OpenIdConnectAuthenticator } from '../../src/auth/openid-connect-authenticator.js';
import type { OutboundFetch } from '../../src/auth/outbound-fetch.js';
import { AuthenticationError } from '../../src/errors.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { TestPki } from '../support/test-pki.js';

const AUDIENCE = 'authenticator-test';

describe('OpenID Connect authenticator: the email of a real ID token under the one email rule', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  let authenticator: OpenIdConnectAuthenticator;
  const bearer = async (claims: Record<string, unknown>) => `Bearer ${await idp.mint({ email_verified: true, ...claims })}`;

  before(async () => {
    pki = new TestPki();
    const cert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: cert.keyPem, cert: cert.certPem }, audience: AUDIENCE });
    // The IdP's certificate is the test CA's: trust it for this fetch only.
    const dispatcher = new Agent({ connect: { ca: pki.caCertPem } });
    const fetch = ((input: string, init?: object) => undiciFetch(input, { ...init, dispatcher })) as unknown as OutboundFetch;
    authenticator = new OpenIdConnectAuthenticator({ issuer: idp.issuer, jwks: idp.jwksUri, audience: [AUDIENCE] }, fetch, new MemoryLogger());
  });
  after(async () => {
    await idp?.close();
    pki?.remove();
  });

  it('lowercases the email in ASCII only', async () => {
    assert.deepEqual(await authenticator.authenticate(await bearer({ email: 'Kate@Example.COM', hd: 'Example.COM' })), { email: 'kate@example.com', hostedDomain: 'example.com' });
  });

  const HOSTILE: [string, string, RegExp][] = [
    ['U+212A KELVIN SIGN', '\u212Aate@example.com', /U\+212A/],
    ['U+0130', '\u0130da@example.com', /U\+0130/],
    ['a fullwidth k', '\uFF4Bate@example.com', /U\+FF4B/],
    ['ESC', 'kate\x1b[2J@example.com', /control character U\+001B/],
    ['NUL', 'kate\0@example.com', /control character U\+0000/],
    ['a quote', 'kate"@example.com', /U\+0022/],
    ['two @', 'kate@evil.example@example.com', /more than one @/],
  ];
  for (const [name, email, reason] of HOSTILE) {
    it(`refuses a validly signed token whose email has ${name}: 401 ERR_TOKEN_EMAIL, never the token`, async () => {
      const authorization = await bearer({ email });
      await assert.rejects(authenticator.authenticate(authorization), (e: unknown) => {
        assert.ok(e instanceof AuthenticationError, String(e));
        assert.equal(e.status, 401);
        assert.equal(e.code, 'ERR_TOKEN_EMAIL');
        assert.match(e.message, /^The email in the ID token cannot be used here: it /);
        assert.match(e.message, reason);
        const text = `${e.message} ${e.details}`;
        assert.equal(/[^\x20-\x7e]/.test(text), false, 'printable ASCII only');
        assert.equal(text.includes(authorization.slice(7, 40)), false, 'the token is not echoed');
        assert.equal(text.includes('kate'), false, 'the email is not echoed');
        return true;
      });
    });
  }

  it('refuses a hosted domain (hd) that is not a domain name', async () => {
    await assert.rejects(authenticator.authenticate(await bearer({ email: 'kate@example.com', hd: '\u212Aexample.com' })), (e: unknown) => {
      assert.ok(e instanceof AuthenticationError);
      assert.equal(e.code, 'ERR_TOKEN_HOSTED_DOMAIN');
      return true;
    });
  });

  it('still says when the email claim is missing', async () => {
    await assert.rejects(authenticator.authenticate(await bearer({ email: '' })), (e: unknown) => e instanceof AuthenticationError && e.code === 'ERR_TOKEN_NO_EMAIL');
    await assert.rejects(authenticator.authenticate(await bearer({ email: 42 })), (e: unknown) => e instanceof AuthenticationError && e.code === 'ERR_TOKEN_NO_EMAIL');
  });
});
