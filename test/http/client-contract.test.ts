import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT, base64url } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { OpenIdConnectAuthenticator } from '../../src/auth/openid-connect-authenticator.js';
import type { OutboundFetch } from '../../src/auth/outbound-fetch.js';
import { request, type Answer } from '../../testbed/http-client.js';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { TestPki } from '../../testbed/test-pki.js';
import { assertErrorAnswer } from '../support/error-answer.js';
import { startInProcessApp, type InProcessApp } from '../support/in-process-app.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { makePrivateKey, twoKeysInOneArmor } from '../support/openpgp-keys.js';

const AUDIENCE = 'ekm-contract';
const EXTENSION_ORIGIN = 'chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc';

/**
 * The parts of the FlowCrypt client contract that do not depend on the store or the process model:
 * hostile tokens, bad bodies, unknown paths and methods, CORS. The app in process through
 * `app.callback()`, with the real OpenID Connect authenticator against the development IdP over
 * HTTPS; test/e2e/client-flow.ts drives the rest through the real daemon on every store.
 */
describe('the client contract in process: every refusal in the error format', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  let dispatcher: Agent;
  let app: InProcessApp;
  let aliceToken: string;
  let alice: Awaited<ReturnType<typeof makePrivateKey>>;

  const mint = (claims: Record<string, unknown>, options = {}) => idp.mint(claims, options);
  const call = (path: string, options: Parameters<typeof request>[1] = {}) => request(`${app.base}${path}`, options);
  const auth = (token: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${token}`, ...extra });

  before(async () => {
    pki = new TestPki();
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    // Node's own fetch reads NODE_EXTRA_CA_CERTS only at start: trust the test CA through undici's agent.
    dispatcher = new Agent({ connect: { ca: pki.caCertPem } });
    const fetch = ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as OutboundFetch;
    app = await startInProcessApp({
      authenticator: new OpenIdConnectAuthenticator(
        { issuer: idp.issuer, jwks: idp.jwksUri, audience: ['other-app-client', AUDIENCE] },
        fetch,
        new MemoryLogger(),
      ),
      properties: ['org.domains=example.com', `api.cors.origins=${EXTENSION_ORIGIN},moz-extension://*`],
    });
    alice = await makePrivateKey('alice@example.com');
    aliceToken = await mint({ email: 'Alice@Example.com', email_verified: true });
    const put = await call('/v1/keys/private', {
      method: 'PUT',
      headers: auth(aliceToken, { 'content-type': 'application/json' }),
      body: JSON.stringify({ privateKey: alice.armored }),
    });
    assert.equal(put.status, 200, put.text);
  });

  after(async () => {
    await app?.close();
    await dispatcher?.close();
    await idp?.close();
    pki?.remove();
  });

  it('refuses every hostile token with 401 in the error format', async () => {
    const valid = { email: 'alice@example.com', email_verified: true };
    const [header, payload, signature] = aliceToken.split('.') as [string, string, string];
    const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload)));
    const jwks = (await request(idp.jwksUri, { ca: pki.caCertPem })).json;
    const publicPem = createPublicKey({ key: jwks.keys[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    const hostile: Record<string, string> = {
      'alg none': `${enc({ alg: 'none', typ: 'JWT' })}.${payload}.`,
      'HS256 signed with the public key': await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: JSON.parse(new TextDecoder().decode(base64url.decode(header))).kid })
        .sign(new TextEncoder().encode(publicPem as string)),
      expired: await mint(valid, { expiresIn: -120, issuedAt: -3700 }),
      'not yet valid': await mint(valid, { notBefore: 600 }),
      'issued in the future': await mint(valid, { issuedAt: 600 }),
      'wrong issuer': await mint(valid, { issuer: 'https://accounts.evil.example' }),
      'wrong audience': await mint(valid, { audience: 'someone-elses-client' }),
      'unknown signing key': await mint(valid, { unpublishedKey: true }),
      'tampered payload': `${header}.${enc({ ...claims, email: 'bob@example.com' })}.${signature}`,
      'no email': await mint({ email_verified: true }),
      'unverified email': await mint({ email: 'alice@example.com', email_verified: false }),
      // Validly signed, but the email is a lookalike or a break-out (the one email rule, keys/email-address.ts).
      'email with U+212A KELVIN SIGN': await mint({ email: '\u212Aate@example.com', email_verified: true }),
      'email with a fullwidth a': await mint({ email: '\uFF41lice@example.com', email_verified: true }),
      'email with ESC': await mint({ email: 'alice\x1b@example.com', email_verified: true }),
      'email with NUL': await mint({ email: 'alice\0@example.com', email_verified: true }),
      'email with a quote': await mint({ email: '"alice"@example.com', email_verified: true }),
      garbage: 'not-a-token',
    };
    for (const [name, token] of Object.entries(hostile)) {
      const answer = await call('/v1/keys/private', { headers: auth(token) });
      assertErrorAnswer(answer, 401, undefined, `hostile token '${name}'`);
      assert.doesNotMatch(answer.text, /PRIVATE KEY/, name);
      assert.equal(answer.text.includes(token), false, `${name}: token echoed`);
    }
    assertErrorAnswer(await call('/v1/keys/private'), 401, /Missing Authorization header/);
    assertErrorAnswer(await call('/v1/keys/private', { headers: { authorization: 'Basic YWxpY2U6cGFzcw==' } }), 401);
    for (const name of ['alg none', 'HS256 signed with the public key']) {
      assertErrorAnswer(await call('/v1/keys/private', { headers: auth(hostile[name]!) }), 401, /signing algorithm is not accepted/, name);
    }
    assertErrorAnswer(await call('/v1/keys/private', { headers: auth(hostile.expired!) }), 401, /expired/);
    assertErrorAnswer(await call('/v1/keys/private', { headers: auth(hostile['wrong audience']!) }), 401, /audience/);
    assertErrorAnswer(await call('/v1/keys/private', { headers: auth(hostile['unknown signing key']!) }), 401, /unknown signing key/);
    assertErrorAnswer(await call('/v1/keys/private', { headers: auth(hostile['unverified email']!) }), 401, /not verified/);
    assertErrorAnswer(
      await call('/v1/keys/private', { headers: auth(hostile['email with U+212A KELVIN SIGN']!) }),
      401,
      /email in the ID token cannot be used here: it contains the character U\+212A/,
    );
    // The valid token still works: the refusals above were the tokens', not the app's.
    assert.equal((await call('/v1/keys/private', { headers: auth(aliceToken) })).json.privateKeys.length, 1);
  });

  it('refuses every bad body with a 4xx in the error format, never a 5xx; unknown methods 405 with Allow, unknown paths 404', async () => {
    const json = (body: string, type = 'application/json') =>
      call('/v1/keys/private', { method: 'PUT', headers: auth(aliceToken, { 'content-type': type }), body });
    const encrypted = await makePrivateKey('alice@example.com', { passphrase: 'a passphrase' });
    const expired = await makePrivateKey('alice@example.com', { expired: true });
    const bobs = await makePrivateKey('bob@example.com');
    const other = await makePrivateKey('alice@example.com');
    const cases: [string, Promise<Answer>, number][] = [
      ['not JSON', json('{"privateKey": '), 400],
      ['wrong content type', json(JSON.stringify({ privateKey: alice.armored }), 'text/plain'), 415],
      ['a 3 MB body', json(JSON.stringify({ privateKey: 'x'.repeat(3 * 1024 * 1024) })), 413],
      ['no field', json('{}'), 400],
      ['a JSON array', json('[]'), 400],
      ['not a key', json(JSON.stringify({ privateKey: 'hello' })), 400],
      ['a public key', json(JSON.stringify({ privateKey: alice.publicKey })), 400],
      ['an encrypted private key', json(JSON.stringify({ privateKey: encrypted.armored })), 400],
      ['an expired key', json(JSON.stringify({ privateKey: expired.armored })), 400],
      ['a key for another email', json(JSON.stringify({ privateKey: bobs.armored })), 400],
      ['two keys in one armor', json(JSON.stringify({ privateKey: await twoKeysInOneArmor(alice.armored, other.armored) })), 400],
    ];
    // Every case is judged, and every failure named, whatever one of them does.
    const failures: string[] = [];
    for (const [name, answer, status] of cases) {
      try {
        assertErrorAnswer(await answer, status);
      } catch (e) {
        failures.push(`${name}: ${(e as Error).message}`);
      }
    }
    assert.deepEqual(failures, []);
    const deleted = await call('/v1/keys/private', { method: 'DELETE', headers: auth(aliceToken) });
    assertErrorAnswer(deleted, 405);
    assert.equal(deleted.headers.allow, 'HEAD, GET, PUT', 'a 405 says what is allowed (RFC 9110)');
    const unknownMethod = await call('/v1/keys/public/alice@example.com', { method: 'PROPFIND' });
    assertErrorAnswer(unknownMethod, 405);
    assert.equal(unknownMethod.headers.allow, 'HEAD, GET');
    assertErrorAnswer(await call('/no/such/path', { method: 'PROPFIND' }), 404);
    assertErrorAnswer(await call('/no/such/path'), 404);
    // Only the known route tails pass the path-prefix rule: an unknown API version or another case is not ours.
    for (const path of ['/v2/keys/private', '/proxy/v2/keys/private', '/V1/Keys/Private'])
      assertErrorAnswer(await call(path, { headers: auth(aliceToken) }), 404, undefined, path);
    assert.equal((await call('/v1/keys/private', { headers: auth(aliceToken) })).json.privateKeys.length, 1);
  });

  it('answers CORS preflights for the configured extension origins only, every Firefox installation included', async () => {
    const preflight = (origin: string) =>
      call('/v1/keys/private', {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'authorization,content-type' },
      });
    const allowed = await preflight(EXTENSION_ORIGIN);
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers['access-control-allow-origin'], EXTENSION_ORIGIN);
    assert.match(String(allowed.headers['access-control-allow-headers']), /Authorization/i);
    const refusedOrigin = await preflight('https://evil.example');
    assert.equal(refusedOrigin.headers['access-control-allow-origin'], undefined);
    // Firefox gives each installation of the extension its own random origin.
    for (const firefox of ['moz-extension://0b3c6f5e-8a41-4f8e-9a63-2d1c2b7e4f10', 'moz-extension://d9a8b7c6-5e4f-4a3b-8c2d-1e0f9a8b7c6d']) {
      assert.equal((await preflight(firefox)).headers['access-control-allow-origin'], firefox);
    }
    for (const lookalike of ['moz-extension://x.evil.example/', 'moz-extension-evil://abc', 'https://moz-extension.evil.example']) {
      assert.equal((await preflight(lookalike)).headers['access-control-allow-origin'], undefined, lookalike);
    }
  });
});
