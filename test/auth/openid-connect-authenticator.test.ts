import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { SignJWT, base64url, generateKeyPair, type JWK } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { OpenIdConnectAuthenticator } from '../../src/auth/openid-connect-authenticator.js';
import type { OutboundFetch } from '../../src/auth/outbound-fetch.js';
import { AuthenticationError } from '../../src/errors.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { TestPki } from '../../testbed/test-pki.js';

const AUDIENCE = 'authenticator-test';
/** How seldom unknown key ids may make the EKM refetch the JWKS (the IdP must not be hammered by forged kids). */
const REFETCH_INTERVAL_MS = 5_000;
const alice = { email: 'alice@example.com', email_verified: true };

/** The error code a refused token gets; fails when the token is accepted or refused otherwise than with a 401. */
async function refusalCode(authenticator: OpenIdConnectAuthenticator, token: string, name: string): Promise<string> {
  try {
    await authenticator.authenticate(`Bearer ${token}`);
  } catch (e) {
    if (e instanceof AuthenticationError) return e.code;
    throw e;
  }
  assert.fail(`${name}: token accepted`);
}

// The authenticator in-process against the real test IdP over HTTPS, as the daemon's workers use it.
describe('OpenIdConnectAuthenticator against the test IdP', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  let dispatcher: Agent;
  let fetch: OutboundFetch;
  const authenticator = () => new OpenIdConnectAuthenticator({ issuer: idp.issuer, jwks: idp.jwksUri, audience: [AUDIENCE] }, fetch, new MemoryLogger());

  before(async () => {
    pki = new TestPki();
    const cert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: cert.keyPem, cert: cert.certPem }, audience: AUDIENCE });
    // Node's own fetch reads NODE_EXTRA_CA_CERTS only at start: trust the test CA through undici's agent.
    dispatcher = new Agent({ connect: { ca: pki.caCertPem } });
    fetch = ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as OutboundFetch;
  });
  after(async () => {
    await dispatcher?.close();
    await idp?.close();
    pki?.remove();
  });

  it('refuses symmetric and unsigned tokens by its own algorithm allow-list (ERR_TOKEN_ALGORITHM)', async () => {
    const auth = authenticator();
    const valid = await idp.mint(alice);
    assert.deepEqual(await auth.authenticate(`Bearer ${valid}`), { email: 'alice@example.com', hostedDomain: undefined });
    const [header, payload] = valid.split('.') as [string, string];
    const { kid } = JSON.parse(new TextDecoder().decode(base64url.decode(header))) as { kid: string };
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload))) as Record<string, unknown>;
    const jwk = ((await (await fetch(idp.jwksUri)).json()) as { keys: JWK[] }).keys.find((k) => k.kid === kid)!;
    const publicKey = createPublicKey({ key: jwk, format: 'jwk' });
    const hs256 = (secret: Uint8Array) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid, typ: 'JWT' }).sign(secret);
    const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
    const hostile: Record<string, string> = {
      'HS256 with a random symmetric key': await hs256(crypto.getRandomValues(new Uint8Array(32))),
      'HS256 with the RSA public key (PEM) as the HMAC secret': await hs256(new TextEncoder().encode(publicKey.export({ type: 'spki', format: 'pem' }) as string)),
      'HS256 with the RSA public key (DER) as the HMAC secret': await hs256(new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }))),
      'alg none': `${enc({ alg: 'none', typ: 'JWT' })}.${payload}.`,
      'alg none with the key id': `${enc({ alg: 'none', kid, typ: 'JWT' })}.${payload}.`,
    };
    for (const [name, token] of Object.entries(hostile)) {
      assert.equal(await refusalCode(auth, token, name), 'ERR_TOKEN_ALGORITHM', name);
    }
  });

  it(`fetches the JWKS at most once per ${REFETCH_INTERVAL_MS} ms for unknown key ids, and takes a rotated key after that`, async () => {
    const auth = authenticator();
    const unknownKidToken = async () => {
      const { privateKey } = await generateKeyPair('RS256');
      return new SignJWT({ ...alice }).setProtectedHeader({ alg: 'RS256', kid: crypto.randomUUID(), typ: 'JWT' })
        .setIssuer(idp.issuer).setAudience(AUDIENCE).setIssuedAt().setExpirationTime('1h').sign(privateKey);
    };
    const unknown = await Promise.all([unknownKidToken(), unknownKidToken(), unknownKidToken()]);
    const fetchesBefore = idp.jwksRequests;
    const started = Date.now();
    await auth.authenticate(`Bearer ${await idp.mint(alice)}`);
    assert.equal(idp.jwksRequests - fetchesBefore, 1, 'the first token fetches the JWKS');

    // Unknown kids arrive one after another within the interval; one is a key the IdP rotated in meanwhile.
    const refusals: Promise<string>[] = [];
    let rotated: Promise<unknown> | undefined;
    for (const [i, token] of unknown.entries()) {
      refusals.push(refusalCode(auth, token, `unknown kid ${i}`).catch((e: unknown) => (e as Error).message));
      if (i === 1) {
        await idp.rotateKey();
        rotated = auth.authenticate(`Bearer ${await idp.mint({ email: 'bob@example.com', email_verified: true })}`).catch((e: unknown) => (e as Error).message);
      }
      await sleep(300);
    }
    // Inside the interval (checked at once, so that a slow machine stays inside it): nothing refetched yet.
    assert.equal(idp.jwksRequests - fetchesBefore, 1, `${idp.jwksRequests - fetchesBefore} JWKS fetches within ${Date.now() - started} ms`);

    // After the interval: one refetch for all of them, which brings in the rotated key.
    assert.deepEqual(await Promise.all(refusals), ['ERR_TOKEN_UNKNOWN_KEY', 'ERR_TOKEN_UNKNOWN_KEY', 'ERR_TOKEN_UNKNOWN_KEY']);
    assert.deepEqual(await rotated, { email: 'bob@example.com', hostedDomain: undefined });
    assert.ok(Date.now() - started >= REFETCH_INTERVAL_MS - 50, `answered after ${Date.now() - started} ms, before the interval was over`);
    assert.equal(idp.jwksRequests - fetchesBefore, 2, 'one refetch after the interval, shared by every waiting token');
  });

  describe('the email of a validly signed token, under the one email rule', () => {
    const bearer = async (claims: Record<string, unknown>) => `Bearer ${await idp.mint({ email_verified: true, ...claims })}`;

    it('lowercases the email and hd in ASCII only', async () => {
      assert.deepEqual(await authenticator().authenticate(await bearer({ email: 'Kate@Example.COM', hd: 'Example.COM' })), { email: 'kate@example.com', hostedDomain: 'example.com' });
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
      it(`refuses an email with ${name}: 401 ERR_TOKEN_EMAIL, echoing neither the token nor the email`, async () => {
        const authorization = await bearer({ email });
        await assert.rejects(authenticator().authenticate(authorization), (e: unknown) => {
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

    it('refuses a hosted domain (hd) that is not a domain name, and still names a missing email', async () => {
      const auth = authenticator();
      assert.equal(await refusalCode(auth, (await bearer({ email: 'kate@example.com', hd: '\u212Aexample.com' })).slice(7), 'hd'), 'ERR_TOKEN_HOSTED_DOMAIN');
      assert.equal(await refusalCode(auth, (await bearer({ email: '' })).slice(7), 'empty email'), 'ERR_TOKEN_NO_EMAIL');
      assert.equal(await refusalCode(auth, (await bearer({ email: 42 })).slice(7), 'email not a string'), 'ERR_TOKEN_NO_EMAIL');
    });
  });
});
