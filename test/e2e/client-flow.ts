import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EkmDaemon, runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { request, type Answer } from '../../testbed/http-client.js';
import { assertErrorAnswer } from '../support/error-answer.js';
import { makePrivateKey, revoked } from '../support/openpgp-keys.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties } from '../support/base-properties.js';

const AUDIENCE = 'ekm-e2e-extension';
const KEYSTORE_PASSWORD = 'e2e keystore password 41d2';

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

/** The steps of the client flow against one store, in the order runClientFlow runs them; each step is one test. */
class ClientFlow {
  private pki!: TestPki;
  private idp!: OpenIdProvider;
  private ekm!: EkmDaemon;
  /** Every token minted and key sent, to check none of them was printed. */
  private readonly tokens: string[] = [];
  private readonly armoredSecrets: string[] = [];
  private alice!: Awaited<ReturnType<typeof makePrivateKey>>;
  private aliceToken!: string;

  constructor(private readonly storeUnderTest: StoreUnderTest) {}

  private async mint(claims: Record<string, unknown>, options = {}): Promise<string> {
    const token = await this.idp.mint(claims, options);
    this.tokens.push(token);
    return token;
  }

  private call(path: string, options: Parameters<typeof request>[1] = {}): Promise<Answer> {
    return request(`${this.ekm.baseUrl}${path}`, { ca: this.pki.caCertPem, ...options });
  }

  private auth(token: string, extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${token}`, ...extra };
  }

  private putKey(token: string, body: unknown, path = '/v1/keys/private'): Promise<Answer> {
    return this.call(path, { method: 'PUT', headers: this.auth(token, { 'content-type': 'application/json' }), body: JSON.stringify(body) });
  }

  /** Starts the IdP, the store and the daemon (HTTPS, 2 workers); makes alice's key and token. */
  async start(): Promise<void> {
    this.pki = new TestPki();
    const serverCert = this.pki.issue('ekm-server', { hosts: ['127.0.0.1', 'localhost'] });
    const idpCert = this.pki.issue('idp', { hosts: ['127.0.0.1'] });
    this.idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    const storeProperties = await this.storeUnderTest.start();
    await this.storeUnderTest.prepare?.(storeProperties);
    this.ekm = await EkmDaemon.start({
      scheme: 'https',
      ca: this.pki.caCertPem,
      env: { NODE_EXTRA_CA_CERTS: this.pki.caCertFile },
      properties: {
        ...baseProperties({ orgId: 'e2e.org', idp: this.idp, audience: `other-app-client,${AUDIENCE}` }),
        'api.https.enabled': 'true',
        'org.domains': 'example.com,example.org',
        'api.workers': '2',
        'api.https.key.file': this.pki.pkcs12(serverCert, KEYSTORE_PASSWORD, 'openssl'),
        'api.https.key.password': KEYSTORE_PASSWORD,
        'api.cors.origins': 'chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc,moz-extension://*',
        ...storeProperties,
        'logger.default.level': 'debug',
      },
    });
    this.alice = await makePrivateKey('alice@example.com');
    this.armoredSecrets.push(this.alice.armored);
    this.aliceToken = await this.mint({ email: 'Alice@Example.com', email_verified: true });
  }

  /** Stops the daemon, the IdP and the store. */
  async stop(): Promise<void> {
    if (process.env.EKM_TEST_OUTPUT) (await import('node:fs')).writeFileSync(process.env.EKM_TEST_OUTPUT, this.ekm?.output ?? '');
    await this.ekm?.stop('SIGKILL');
    await this.idp?.close();
    await this.storeUnderTest.stop();
    this.pki?.remove();
  }

  async rootAndHealth(): Promise<void> {
    const root = await this.call('/');
    assert.equal(root.status, 200);
    assert.deepEqual(root.json, {
      service: 'email-key-manager',
      orgId: 'e2e.org',
      authenticator: 'OpenIDConnectAuthenticator',
      acl: 'SimpleAcl',
      store: this.storeUnderTest.type,
    });
    const health = await this.call('/health');
    assert.equal(health.status, 200);
    assert.equal(health.json.storeStatus, 'up');
    assert.equal(health.json.storeType, this.storeUnderTest.type);
  }

  async putAndGet(): Promise<void> {
    const put = await this.putKey(this.aliceToken, { privateKey: this.alice.armored });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.json, {});
    const get = await this.call('/v1/keys/private', { headers: this.auth(this.aliceToken) });
    assert.equal(get.status, 200);
    assert.equal(get.headers['cache-control'], 'no-store');
    assert.equal(get.json.privateKeys.length, 1);
    const { readPrivateKey } = await import('openpgp');
    const returned = await readPrivateKey({ armoredKey: get.json.privateKeys[0].decryptedPrivateKey });
    assert.equal(returned.getFingerprint().toUpperCase(), this.alice.fingerprint);
    assert.equal(returned.isDecrypted(), true);
    // Idempotent upsert by fingerprint.
    assert.equal((await this.putKey(this.aliceToken, { privateKey: this.alice.armored })).status, 200);
    assert.equal((await this.call('/v1/keys/private', { headers: this.auth(this.aliceToken) })).json.privateKeys.length, 1);
  }

  async otherUsersSeeNothing(): Promise<void> {
    const bobToken = await this.mint({ email: 'bob@example.com', email_verified: true });
    const get = await this.call('/v1/keys/private', { headers: this.auth(bobToken) });
    assert.equal(get.status, 200);
    assert.deepEqual(get.json, { privateKeys: [] });
    assertErrorAnswer(await this.putKey(bobToken, { privateKey: this.alice.armored }), 400, /no user id for bob@example.com/);
    // A key carrying both users' ids: the first owner keeps it.
    const shared = await makePrivateKey(['carol@example.com', 'dave@example.com']);
    this.armoredSecrets.push(shared.armored);
    assert.equal((await this.putKey(await this.mint({ email: 'carol@example.com', email_verified: true }), { privateKey: shared.armored })).status, 200);
    assertErrorAnswer(await this.putKey(await this.mint({ email: 'dave@example.com', email_verified: true }), { privateKey: shared.armored }), 409);
    // Outside the organisation's domains.
    const outsider = await makePrivateKey('eve@evil.example');
    assertErrorAnswer(await this.putKey(await this.mint({ email: 'eve@evil.example', email_verified: true }), { privateKey: outsider.armored }), 403);
    assert.equal((await this.call('/v1/keys/private', { headers: this.auth(this.aliceToken) })).json.privateKeys.length, 1);
  }

  async publicKeys(): Promise<void> {
    for (const path of ['/v1/keys/public/alice@example.com', '/keys/public/ALICE@example.com', '/proxy/prefix/v1/keys/public/alice@example.com']) {
      const answer = await this.call(path);
      assert.equal(answer.status, 200, path);
      assert.equal(answer.json.publicKeys.length, 1);
      assert.match(answer.json.publicKeys[0].publicKey, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
      assert.doesNotMatch(answer.text, /PRIVATE KEY/);
    }
    assert.deepEqual((await this.call('/v1/keys/public/nobody@example.com')).json, { publicKeys: [] });
    assertErrorAnswer(await this.call('/v1/keys/public/not-an-email'), 400);
    assertErrorAnswer(await this.call(`/v1/keys/public/${encodeURIComponent('\uFF41lice@example.com')}`), 400, /Not an email address this key manager accepts/);
    // Browser releases of 2020-03 to 2021-07 look recipients up by fingerprint and long key id.
    const byEmail = (await this.call('/v1/keys/public/alice@example.com')).json;
    for (const path of [
      `/keys/public/${this.alice.fingerprint.toLowerCase()}`,
      `/keys/public/${this.alice.fingerprint.slice(-16)}`,
      `/v1/keys/public/${this.alice.fingerprint}`,
    ]) {
      const answer = await this.call(path);
      assert.equal(answer.status, 200, path);
      assert.deepEqual(answer.json, byEmail, path);
    }
    const { readKey } = await import('openpgp');
    const subkeyLongId = (await readKey({ armoredKey: this.alice.publicKey })).getSubkeys()[0]!.getKeyID().toHex();
    assert.deepEqual((await this.call(`/v1/keys/public/${subkeyLongId}`)).json, byEmail, 'by the long id of the encryption subkey');
    assert.deepEqual((await this.call(`/keys/public/${'0'.repeat(16)}`)).json, { publicKeys: [] });
    assert.deepEqual((await this.call(`/v1/keys/public/${'AB'.repeat(32)}`)).json, { publicKeys: [] }, 'a v6 (64-hex) fingerprint');
    assertErrorAnswer(await this.call(`/keys/public/${this.alice.fingerprint.slice(-15)}`), 400);
  }

  async revocation(): Promise<void> {
    const grace = await makePrivateKey('grace@example.com');
    this.armoredSecrets.push(grace.armored);
    const token = await this.mint({ email: 'grace@example.com', email_verified: true });
    const revokedGrace = await revoked(grace.armored);
    this.armoredSecrets.push(revokedGrace);
    assertErrorAnswer(await this.putKey(token, { privateKey: revokedGrace }), 400, /The key is revoked/, 'a revoked key nobody holds');
    assert.equal((await this.putKey(token, { privateKey: grace.armored })).status, 200);
    const put = await this.putKey(token, { privateKey: revokedGrace });
    assert.equal(put.status, 200, put.text);
    const get = await this.call('/v1/keys/private', { headers: this.auth(token) });
    assert.equal(get.json.privateKeys.length, 1);
    const { readPrivateKey } = await import('openpgp');
    const served = await readPrivateKey({ armoredKey: get.json.privateKeys[0].decryptedPrivateKey });
    assert.equal(served.getFingerprint().toUpperCase(), grace.fingerprint);
    assert.equal(await served.isRevoked(), true, 'the apps get the revoked key');
  }

  async legacyPathsAndBodies(): Promise<void> {
    const frank = await makePrivateKey('frank@example.com');
    this.armoredSecrets.push(frank.armored);
    const token = await this.mint({ email: 'frank@example.com', email_verified: true });
    const legacy = { decryptedPrivateKey: frank.armored, publicKey: frank.publicKey, fingerprint: frank.fingerprint };
    assert.equal((await this.putKey(token, legacy, '/keys/private')).status, 200);
    assert.equal(
      (await this.putKey(token, { decryptedPrivateKey: frank.armored, publicKey: frank.publicKey, longid: frank.fingerprint.slice(-16) }, '/keys/private'))
        .status,
      200,
    );
    assertErrorAnswer(await this.putKey(token, { ...legacy, fingerprint: this.alice.fingerprint }, '/keys/private'), 400, /fingerprint sent does not match/);
    // Browser 8.3.2 sends the older body to /v1, with the same checks.
    assert.equal((await this.putKey(token, legacy)).status, 200);
    assertErrorAnswer(await this.putKey(token, { ...legacy, publicKey: this.alice.publicKey }), 400, /public key sent does not match/);
    // privateKey wins when both are present.
    assert.equal((await this.putKey(token, { privateKey: frank.armored, decryptedPrivateKey: 'not a key' })).status, 200);
    assertErrorAnswer(await this.putKey(token, { publicKey: frank.publicKey }), 400, /Field 'privateKey' is required/);
    const get = await this.call('/keys/private', { headers: this.auth(token) });
    assert.equal(get.status, 200);
    assert.equal(get.json.privateKeys.length, 1);
    assert.match(get.json.privateKeys[0].decryptedPrivateKey, /BEGIN PGP PRIVATE KEY BLOCK/);
  }

  async storeOutage(): Promise<void> {
    const restore = await this.storeUnderTest.breakStore();
    try {
      const health = await this.call('/health');
      assertErrorAnswer(health, 503);
      assert.equal(health.json.storeStatus, 'down');
      for (let i = 0; i < 4; i++)
        assertErrorAnswer(await this.call('/v1/keys/private', { headers: this.auth(this.aliceToken) }), 503, /Key store is unavailable/);
      assert.equal((await this.call('/')).status, 200);
    } finally {
      await restore();
    }
    // Recovers by itself, without a restart (some stores reconnect with a backoff).
    const deadline = Date.now() + 15_000;
    while ((await this.call('/health')).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal((await this.call('/health')).status, 200);
    assert.equal((await this.call('/v1/keys/private', { headers: this.auth(this.aliceToken) })).json.privateKeys.length, 1);
  }

  async idpOutage(): Promise<void> {
    this.idp.available = false;
    await this.idp.rotateKey();
    const rotated = await this.mint({ email: 'alice@example.com', email_verified: true });
    try {
      assertErrorAnswer(await this.call('/v1/keys/private', { headers: this.auth(rotated) }), 503, /Identity provider/);
    } finally {
      this.idp.available = true;
    }
    const started = Date.now();
    const answer = await this.call('/v1/keys/private', { headers: this.auth(rotated) });
    assert.equal(answer.status, 200, answer.text);
    assert.ok(Date.now() - started < 12_000);
  }

  async workerReplacement(): Promise<void> {
    const before = this.ekm.workerPids();
    assert.equal(before.length, 2);
    const listening = () => this.ekm.output.match(/"message":"Worker listening"/g)?.length ?? 0;
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
        const a = await this.call('/v1/keys/private', { headers: this.auth(this.aliceToken), timeoutMs: 2000 });
        assert.equal(a.status, 200, a.text);
        assert.equal(a.json.privateKeys.length, 1);
        ok++;
        if (replaced) okSinceReplaced++;
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        failed++;
      }
    }
    const after = this.ekm.workerPids();
    assert.equal(after.length, 2);
    assert.ok(!after.includes(before[0]!));
    assert.equal(okSinceReplaced, 10, `the replacement worker never served (ok ${ok}, failed ${failed})`);
    assert.ok(failed <= 2, `${failed} requests failed, ${ok} succeeded`);
    assert.match(this.ekm.output, /Worker crashed; replacing it/);
  }

  async drainOnSigterm(): Promise<void> {
    const george = await makePrivateKey('george@example.com');
    this.armoredSecrets.push(george.armored);
    const token = await this.mint({ email: 'george@example.com', email_verified: true });
    let stopped: Promise<{ code: number | null }> | undefined;
    const put = this.call('/v1/keys/private', {
      method: 'PUT',
      headers: this.auth(token, { 'content-type': 'application/json' }),
      body: JSON.stringify({ privateKey: george.armored }),
      bodyDelayMs: 700,
      onRequestStarted: () => {
        setTimeout(() => {
          stopped = this.ekm.stop('SIGTERM');
        }, 200);
      },
    });
    const answer = await put;
    assert.equal(answer.status, 200, answer.text);
    const exit = await stopped!;
    assert.equal(exit.code, 0);
    await assert.rejects(this.call('/'));
  }

  noSecretsPrinted(): void {
    const output = this.ekm.output;
    assert.ok(output.length > 1000);
    for (const armored of this.armoredSecrets) {
      for (const line of armored.split('\n').filter((l) => l.length >= 40)) assert.equal(output.includes(line), false, 'key material in the output');
    }
    for (const token of this.tokens) {
      assert.equal(output.includes(token), false, 'a token in the output');
      assert.equal(output.includes(token.split('.')[2]!), false, 'a token signature in the output');
    }
    for (const secret of this.storeUnderTest.secrets?.() ?? []) assert.equal(output.includes(secret), false, 'a store secret in the output');
    assert.equal(output.includes(KEYSTORE_PASSWORD), false);
    assert.doesNotMatch(output, /PRIVATE KEY BLOCK|Bearer /);
  }
}

/**
 * The FlowCrypt client contract, driven against the real daemon (2 workers, HTTPS) on one store:
 * each store's e2e file calls this once. What does not depend on the store (hostile tokens, bad
 * bodies, 404/405, CORS) is tested once, in process: test/http/client-contract.test.ts.
 */
export function runClientFlow(storeUnderTest: StoreUnderTest): void {
  describe(`end to end: the FlowCrypt client contract against the real daemon (2 workers, HTTPS, ${storeUnderTest.type})`, () => {
    const flow = new ClientFlow(storeUnderTest);
    before(() => flow.start());
    after(() => flow.stop());
    it('answers / whether or not the store is reachable, and /health with a real store round trip', () => flow.rootAndHealth());
    it('stores a key with PUT and returns it with GET, no-store', () => flow.putAndGet());
    it("shows another user nothing of alice's and lets them touch none of it", () => flow.otherUsersSeeNothing());
    it('serves public keys to anyone, on the current and legacy paths', () => flow.publicKeys());
    it('takes a revocation of a held key and serves it; refuses a revoked key nobody holds', () => flow.revocation());
    it('accepts the legacy paths and bodies of older clients', () => flow.legacyPathsAndBodies());
    it('answers 503, never an empty list, while the store cannot be read, and recovers', () => flow.storeOutage());
    it("answers 503, not 401, while the IdP's keys cannot be fetched, and takes a rotated key within seconds", () => flow.idpOutage());
    it('replaces a worker killed with SIGKILL while requests keep succeeding', () => flow.workerReplacement());
    it('finishes an in-flight request on SIGTERM, then exits 0', () => flow.drainOnSigterm());
    it('printed no private key, token, passphrase or keystore password', () => flow.noSecretsPrinted());
  });
}
