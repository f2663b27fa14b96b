import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT, base64url } from 'jose';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EkmDaemon, runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { request, type Answer } from '../../testbed/http-client.js';
import { makePrivateKey, revoked, twoKeysInOneArmor } from '../support/openpgp-keys.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties } from '../support/base-properties.js';

const AUDIENCE = 'ekm-e2e-extension';
const KEYSTORE_PASSWORD = 'e2e keystore password 41d2';

/** An error answer: the status, and the body format every client relies on; `input` names what was sent. */
function assertError(answer: Answer, status: number, message?: RegExp, input?: string): void {
  const context = input === undefined ? answer.text : `${input}: ${answer.status} ${answer.text.slice(0, 300)}`;
  assert.equal(answer.status, status, context);
  assert.equal(answer.json?.code, status, context);
  assert.equal(typeof answer.json?.message, 'string', context);
  assert.equal(typeof answer.json?.details, 'string', context);
  if (message) assert.match(answer.json.message, message, context);
}

/** What the client-flow suite needs of a store. */
export interface StoreUnderTest {
  readonly type: string;
  /** Starts the store's backend and returns the daemon's store.* (and truststore.*) properties. */
  start(): Promise<Record<string, string>>;
  /** Runs once the config is written, before the daemon starts (e.g. --test-store-connection). */
  prepare?(configProperties: Record<string, string>): Promise<void>;
  /** Makes the store unreadable for the running daemon; resolves with a function that undoes it. */
  breakStore(): Promise<() => Promise<void>>;
  stop(): Promise<void>;
  /** Extra secrets the daemon must never print (PINs, keystore passwords). */
  readonly secrets?: () => string[];
}

/**
 * Runs `flowcrypt-ekm --test-store-connection` on the store's settings, as an operator does before
 * the first start, and checks it reports success and a round trip latency.
 */
export async function testStoreConnection(storeProperties: Record<string, string>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ekm-store-test-'));
  const config = writeProperties(dir, {
    ...baseProperties({ orgId: 'store-test.org', audience: 'store-test' }),
    'auth.openid.issuer': 'https://accounts.google.com',
    ...storeProperties,
  });
  const { code, output } = await runEkm([`--config=${config}`, '--test-store-connection']);
  assert.equal(code, 0, output);
  assert.match(output, /store session started successfully[\s\S]*round trip latency: [\d.]+ms[\s\S]*success/);
}

/**
 * The FlowCrypt client contract, driven against the real daemon (2 workers, HTTPS) on one store:
 * each store's e2e file calls this once.
 */
export function runClientFlow(storeUnderTest: StoreUnderTest): void {
describe(`end to end: the FlowCrypt client contract against the real daemon (2 workers, HTTPS, ${storeUnderTest.type})`, () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  let ekm: EkmDaemon;
  const tokens: string[] = [];
  const armoredSecrets: string[] = [];
  let alice: Awaited<ReturnType<typeof makePrivateKey>>;
  let aliceToken: string;

  const mint = async (claims: Record<string, unknown>, options = {}) => {
    const token = await idp.mint(claims, options);
    tokens.push(token);
    return token;
  };
  const call = (path: string, options: Parameters<typeof request>[1] = {}) => request(`${ekm.baseUrl}${path}`, { ca: pki.caCertPem, ...options });
  const auth = (token: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${token}`, ...extra });
  const putKey = (token: string, body: unknown, path = '/v1/keys/private') =>
    call(path, { method: 'PUT', headers: auth(token, { 'content-type': 'application/json' }), body: JSON.stringify(body) });

  before(async () => {
    pki = new TestPki();
    const serverCert = pki.issue('ekm-server', { hosts: ['127.0.0.1', 'localhost'] });
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    const storeProperties = await storeUnderTest.start();
    await storeUnderTest.prepare?.(storeProperties);
    ekm = await EkmDaemon.start({
      scheme: 'https',
      ca: pki.caCertPem,
      env: { NODE_EXTRA_CA_CERTS: pki.caCertFile },
      properties: {
        ...baseProperties({ orgId: 'e2e.org', idp, audience: `other-app-client,${AUDIENCE}` }),
        'api.https.enabled': 'true',
        'org.domains': 'example.com,example.org',
        'api.workers': '2',
        'api.https.key.file': pki.pkcs12(serverCert, KEYSTORE_PASSWORD, 'openssl'),
        'api.https.key.password': KEYSTORE_PASSWORD,
        'api.cors.origins': 'chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc',
        ...storeProperties,
        'logger.default.level': 'debug',
      },
    });
    alice = await makePrivateKey('alice@example.com');
    armoredSecrets.push(alice.armored);
    aliceToken = await mint({ email: 'Alice@Example.com', email_verified: true });
  });

  after(async () => {
    if (process.env['EKM_TEST_OUTPUT']) (await import('node:fs')).writeFileSync(process.env['EKM_TEST_OUTPUT'], ekm?.output ?? '');
    await ekm?.stop('SIGKILL');
    await idp?.close();
    await storeUnderTest.stop();
    pki?.remove();
  });

  it('answers / whether or not the store is reachable, and /health with a real store round trip', async () => {
    const root = await call('/');
    assert.equal(root.status, 200);
    assert.deepEqual(root.json, { service: 'email-key-manager', orgId: 'e2e.org', authenticator: 'OpenIDConnectAuthenticator', acl: 'SimpleAcl', store: storeUnderTest.type });
    const health = await call('/health');
    assert.equal(health.status, 200);
    assert.equal(health.json.storeStatus, 'up');
    assert.equal(health.json.storeType, storeUnderTest.type);
  });

  it('stores a key with PUT and returns it with GET, no-store', async () => {
    const put = await putKey(aliceToken, { privateKey: alice.armored });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.json, {});
    const get = await call('/v1/keys/private', { headers: auth(aliceToken) });
    assert.equal(get.status, 200);
    assert.equal(get.headers['cache-control'], 'no-store');
    assert.equal(get.json.privateKeys.length, 1);
    const { readPrivateKey } = await import('openpgp');
    const returned = await readPrivateKey({ armoredKey: get.json.privateKeys[0].decryptedPrivateKey });
    assert.equal(returned.getFingerprint().toUpperCase(), alice.fingerprint);
    assert.equal(returned.isDecrypted(), true);
    // Idempotent upsert by fingerprint.
    assert.equal((await putKey(aliceToken, { privateKey: alice.armored })).status, 200);
    assert.equal((await call('/v1/keys/private', { headers: auth(aliceToken) })).json.privateKeys.length, 1);
  });

  it("shows another user nothing of alice's and lets them touch none of it", async () => {
    const bobToken = await mint({ email: 'bob@example.com', email_verified: true });
    const get = await call('/v1/keys/private', { headers: auth(bobToken) });
    assert.equal(get.status, 200);
    assert.deepEqual(get.json, { privateKeys: [] });
    assertError(await putKey(bobToken, { privateKey: alice.armored }), 400, /no user id for bob@example.com/);
    // A key carrying both users' ids: the first owner keeps it.
    const shared = await makePrivateKey(['carol@example.com', 'dave@example.com']);
    armoredSecrets.push(shared.armored);
    assert.equal((await putKey(await mint({ email: 'carol@example.com', email_verified: true }), { privateKey: shared.armored })).status, 200);
    assertError(await putKey(await mint({ email: 'dave@example.com', email_verified: true }), { privateKey: shared.armored }), 409);
    // Outside the organisation's domains.
    const outsider = await makePrivateKey('eve@evil.example');
    assertError(await putKey(await mint({ email: 'eve@evil.example', email_verified: true }), { privateKey: outsider.armored }), 403);
    assert.equal((await call('/v1/keys/private', { headers: auth(aliceToken) })).json.privateKeys.length, 1);
  });

  it('serves public keys to anyone, on the current and legacy paths', async () => {
    for (const path of ['/v1/keys/public/alice@example.com', '/keys/public/ALICE@example.com', '/proxy/prefix/v1/keys/public/alice@example.com']) {
      const answer = await call(path);
      assert.equal(answer.status, 200, path);
      assert.equal(answer.json.publicKeys.length, 1);
      assert.match(answer.json.publicKeys[0].publicKey, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
      assert.doesNotMatch(answer.text, /PRIVATE KEY/);
    }
    assert.deepEqual((await call('/v1/keys/public/nobody@example.com')).json, { publicKeys: [] });
    assertError(await call('/v1/keys/public/not-an-email'), 400);
    assertError(await call(`/v1/keys/public/${encodeURIComponent('\uFF41lice@example.com')}`), 400, /Not an email address this key manager accepts/);
  });

  it('takes a revocation of a held key and serves it; refuses a revoked key nobody holds', async () => {
    const grace = await makePrivateKey('grace@example.com');
    armoredSecrets.push(grace.armored);
    const token = await mint({ email: 'grace@example.com', email_verified: true });
    const revokedGrace = await revoked(grace.armored);
    armoredSecrets.push(revokedGrace);
    assertError(await putKey(token, { privateKey: revokedGrace }), 400, /The key is revoked/, 'a revoked key nobody holds');
    assert.equal((await putKey(token, { privateKey: grace.armored })).status, 200);
    const put = await putKey(token, { privateKey: revokedGrace });
    assert.equal(put.status, 200, put.text);
    const get = await call('/v1/keys/private', { headers: auth(token) });
    assert.equal(get.json.privateKeys.length, 1);
    const { readPrivateKey } = await import('openpgp');
    const served = await readPrivateKey({ armoredKey: get.json.privateKeys[0].decryptedPrivateKey });
    assert.equal(served.getFingerprint().toUpperCase(), grace.fingerprint);
    assert.equal(await served.isRevoked(), true, 'the apps get the revoked key');
  });

  it('accepts the legacy paths and bodies of older clients', async () => {
    const frank = await makePrivateKey('frank@example.com');
    armoredSecrets.push(frank.armored);
    const token = await mint({ email: 'frank@example.com', email_verified: true });
    const legacy = { decryptedPrivateKey: frank.armored, publicKey: frank.publicKey, fingerprint: frank.fingerprint };
    assert.equal((await putKey(token, legacy, '/keys/private')).status, 200);
    assert.equal((await putKey(token, { decryptedPrivateKey: frank.armored, publicKey: frank.publicKey, longid: frank.fingerprint.slice(-16) }, '/keys/private')).status, 200);
    assertError(await putKey(token, { ...legacy, fingerprint: alice.fingerprint }, '/keys/private'), 400, /fingerprint sent does not match/);
    // Browser 8.3.2 sends the older body to /v1, with the same checks.
    assert.equal((await putKey(token, legacy)).status, 200);
    assertError(await putKey(token, { ...legacy, publicKey: alice.publicKey }), 400, /public key sent does not match/);
    // privateKey wins when both are present.
    assert.equal((await putKey(token, { privateKey: frank.armored, decryptedPrivateKey: 'not a key' })).status, 200);
    assertError(await putKey(token, { publicKey: frank.publicKey }), 400, /Field 'privateKey' is required/);
    const get = await call('/keys/private', { headers: auth(token) });
    assert.equal(get.status, 200);
    assert.equal(get.json.privateKeys.length, 1);
    assert.match(get.json.privateKeys[0].decryptedPrivateKey, /BEGIN PGP PRIVATE KEY BLOCK/);
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
      assertError(answer, 401, undefined, `hostile token '${name}'`);
      assert.doesNotMatch(answer.text, /PRIVATE KEY/, name);
      assert.equal(answer.text.includes(token), false, `${name}: token echoed`);
    }
    assertError(await call('/v1/keys/private'), 401, /Missing Authorization header/);
    assertError(await call('/v1/keys/private', { headers: { authorization: 'Basic YWxpY2U6cGFzcw==' } }), 401);
    for (const name of ['alg none', 'HS256 signed with the public key']) {
      assertError(await call('/v1/keys/private', { headers: auth(hostile[name]!) }), 401, /signing algorithm is not accepted/, name);
    }
    assertError(await call('/v1/keys/private', { headers: auth(hostile['expired']!) }), 401, /expired/);
    assertError(await call('/v1/keys/private', { headers: auth(hostile['wrong audience']!) }), 401, /audience/);
    assertError(await call('/v1/keys/private', { headers: auth(hostile['unknown signing key']!) }), 401, /unknown signing key/);
    assertError(await call('/v1/keys/private', { headers: auth(hostile['unverified email']!) }), 401, /not verified/);
    assertError(await call('/v1/keys/private', { headers: auth(hostile['email with U+212A KELVIN SIGN']!) }), 401, /email in the ID token cannot be used here: it contains the character U\+212A/);
  });

  it('refuses every bad body with a 4xx in the error format, never a 5xx', async () => {
    const json = (body: string, type = 'application/json') => call('/v1/keys/private', { method: 'PUT', headers: auth(aliceToken, { 'content-type': type }), body });
    const encrypted = await makePrivateKey('alice@example.com', { passphrase: 'a passphrase' });
    const expired = await makePrivateKey('alice@example.com', { expired: true });
    const bobs = await makePrivateKey('bob@example.com');
    const other = await makePrivateKey('alice@example.com');
    armoredSecrets.push(expired.armored, bobs.armored, other.armored);
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
        const a = await answer;
        assert.equal(a.status, status, a.text);
        assertError(a, status);
      } catch (e) {
        failures.push(`${name}: ${(e as Error).message}`);
      }
    }
    assert.deepEqual(failures, []);
    const deleted = await call('/v1/keys/private', { method: 'DELETE', headers: auth(aliceToken) });
    assertError(deleted, 405);
    assert.equal(deleted.headers['allow'], 'HEAD, GET, PUT', 'a 405 says what is allowed (RFC 9110)');
    const unknownMethod = await call('/v1/keys/public/alice@example.com', { method: 'PROPFIND' });
    assertError(unknownMethod, 405);
    assert.equal(unknownMethod.headers['allow'], 'HEAD, GET');
    assertError(await call('/no/such/path', { method: 'PROPFIND' }), 404);
    assertError(await call('/no/such/path'), 404);
    assert.equal((await call('/v1/keys/private', { headers: auth(aliceToken) })).json.privateKeys.length, 1);
  });

  it('answers CORS preflights for the configured extension origin only', async () => {
    const preflight = (origin: string) =>
      call('/v1/keys/private', { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'authorization,content-type' } });
    const allowed = await preflight('chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc');
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers['access-control-allow-origin'], 'chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc');
    assert.match(String(allowed.headers['access-control-allow-headers']), /Authorization/i);
    const refusedOrigin = await preflight('https://evil.example');
    assert.equal(refusedOrigin.headers['access-control-allow-origin'], undefined);
  });

  it('answers 503, never an empty list, while the store cannot be read, and recovers', async () => {
    const restore = await storeUnderTest.breakStore();
    try {
      const health = await call('/health');
      assertError(health, 503);
      assert.equal(health.json.storeStatus, 'down');
      for (let i = 0; i < 4; i++) assertError(await call('/v1/keys/private', { headers: auth(aliceToken) }), 503, /Key store is unavailable/);
      assert.equal((await call('/')).status, 200);
    } finally {
      await restore();
    }
    // Recovers by itself, without a restart (some stores reconnect with a backoff).
    const deadline = Date.now() + 15_000;
    while ((await call('/health')).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal((await call('/health')).status, 200);
    assert.equal((await call('/v1/keys/private', { headers: auth(aliceToken) })).json.privateKeys.length, 1);
  });

  it("answers 503, not 401, while the IdP's keys cannot be fetched, and takes a rotated key within seconds", async () => {
    idp.available = false;
    await idp.rotateKey();
    const rotated = await mint({ email: 'alice@example.com', email_verified: true });
    try {
      assertError(await call('/v1/keys/private', { headers: auth(rotated) }), 503, /Identity provider/);
    } finally {
      idp.available = true;
    }
    const started = Date.now();
    const answer = await call('/v1/keys/private', { headers: auth(rotated) });
    assert.equal(answer.status, 200, answer.text);
    assert.ok(Date.now() - started < 12_000);
  });

  it('replaces a worker killed with SIGKILL while requests keep succeeding', async () => {
    const before = ekm.workerPids();
    assert.equal(before.length, 2);
    const listening = () => ekm.output.match(/"message":"Worker listening"/g)?.length ?? 0;
    const listeningBefore = listening();
    process.kill(before[0]!, 'SIGKILL');
    // A connection the primary handed to the worker as it died is lost (that client times out and
    // retries); every other request is served, by the surviving worker and then by the replacement.
    let ok = 0;
    let failed = 0;
    let okSinceReplaced = 0;
    const deadline = Date.now() + 60_000;
    while (okSinceReplaced < 10 && Date.now() < deadline) {
      const replaced = listening() > listeningBefore;
      try {
        const a = await call('/v1/keys/private', { headers: auth(aliceToken), timeoutMs: 2000 });
        assert.equal(a.status, 200, a.text);
        assert.equal(a.json.privateKeys.length, 1);
        ok++;
        if (replaced) okSinceReplaced++;
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        failed++;
      }
    }
    const after = ekm.workerPids();
    assert.equal(after.length, 2);
    assert.ok(!after.includes(before[0]!));
    assert.equal(okSinceReplaced, 10, `the replacement worker never served (ok ${ok}, failed ${failed})`);
    assert.ok(failed <= 2, `${failed} requests failed, ${ok} succeeded`);
    assert.match(ekm.output, /Worker crashed; replacing it/);
  });

  it('finishes an in-flight request on SIGTERM, then exits 0', async () => {
    const george = await makePrivateKey('george@example.com');
    armoredSecrets.push(george.armored);
    const token = await mint({ email: 'george@example.com', email_verified: true });
    let stopped: Promise<{ code: number | null }> | undefined;
    const put = call('/v1/keys/private', {
      method: 'PUT',
      headers: auth(token, { 'content-type': 'application/json' }),
      body: JSON.stringify({ privateKey: george.armored }),
      bodyDelayMs: 700,
      onRequestStarted: () => {
        setTimeout(() => (stopped = ekm.stop('SIGTERM')), 200);
      },
    });
    const answer = await put;
    assert.equal(answer.status, 200, answer.text);
    const exit = await stopped!;
    assert.equal(exit.code, 0);
    await assert.rejects(call('/'));
  });

  it('printed no private key, token, passphrase or keystore password', () => {
    const output = ekm.output;
    assert.ok(output.length > 1000);
    for (const armored of armoredSecrets) {
      for (const line of armored.split('\n').filter((l) => l.length >= 40)) assert.equal(output.includes(line), false, 'key material in the output');
    }
    for (const token of tokens) {
      assert.equal(output.includes(token), false, 'a token in the output');
      assert.equal(output.includes(token.split('.')[2]!), false, 'a token signature in the output');
    }
    for (const secret of storeUnderTest.secrets?.() ?? []) assert.equal(output.includes(secret), false, 'a store secret in the output');
    assert.equal(output.includes(KEYSTORE_PASSWORD), false);
    assert.doesNotMatch(output, /PRIVATE KEY BLOCK|Bearer /);
  });
});
}
