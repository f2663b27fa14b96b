import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { EkmDaemon, runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { PykmipServer } from '../../testbed/pykmip-server.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties } from '../support/base-properties.js';

const AUDIENCE = 'ekm-kmip-e2e';
const ROUNDS = 300;

/**
 * The real daemon (cluster mode) with store.type=KmipStore on a real PyKMIP server: the store
 * connection test, key GETs through HTTP, and /health and reads during a KMIP outage.
 */
describe('EKM daemon on KmipStore (PyKMIP)', () => {
  let kmip: PykmipServer;
  let idpPki: TestPki;
  let idp: OpenIdProvider;
  let dir: string;
  let properties: Record<string, string>;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    kmip = await PykmipServer.start();
    idpPki = new TestPki('EKM e2e IdP CA');
    const idpCert = idpPki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    dir = mkdtempSync(join(tmpdir(), 'ekm-kmip-e2e-'));
    properties = {
      ...baseProperties({ orgId: 'kmip-e2e.example', idp, audience: AUDIENCE }),
      'api.workers': '2',
      ...kmip.properties('openssl', 'keytool'),
      'logger.types': 'StdoutLogger',
    };
    env = { NODE_EXTRA_CA_CERTS: idpPki.caCertFile };
  });
  after(async () => {
    await idp.close();
    await kmip.remove();
    idpPki.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--test-store-connection sends a LOCATE and reports its latency', async () => {
    const config = writeProperties(dir, properties, 'ok.properties');
    const { code, output } = await runEkm([`--config=${config}`, '--test-store-connection'], { env });
    assert.equal(code, 0, output);
    assert.match(output, /round trip latency: [\d.]+ms/);
    assert.match(output, /success/);
  });

  it('--test-store-connection fails in plain words when nothing listens on the port', async () => {
    const config = writeProperties(dir, { ...properties, 'store.kmip.port': '1' }, 'refused.properties');
    const { code, output } = await runEkm([`--config=${config}`, '--test-store-connection'], { env });
    assert.equal(code, 1, output);
    assert.match(output, /Connection refused by the KMIP server at 127\.0\.0\.1:1/);
  });

  it('starts while the KMIP server cannot be reached (an outage, not a configuration error): / answers 200, /health 503', async () => {
    const daemon = await EkmDaemon.start({ properties: { ...properties, 'store.kmip.port': '1' }, env, dir: mkdtempSync(join(dir, 'unreachable-')) });
    try {
      assert.equal((await fetch(`${daemon.baseUrl}/`)).status, 200);
      const health = await fetch(`${daemon.baseUrl}/health`);
      assert.equal(health.status, 503);
      assert.equal(((await health.json()) as { storeStatus: string }).storeStatus, 'down');
      assert.match(daemon.output, /The store is unavailable at start; serving anyway/);
      assert.equal(daemon.process.exitCode, null);
    } finally {
      await daemon.stop('SIGKILL');
    }
  });

  it('refuses to start with a wrong store.kmip.key.password (exit 78), naming the file and not the password', async () => {
    const config = writeProperties(dir, { ...properties, 'store.kmip.key.password': 'wrong-pass-123' }, 'wrong.properties');
    const { code, output } = await runEkm([`--config=${config}`, '--test-store-connection'], { env });
    assert.equal(code, 78, output);
    assert.match(output, /store\.kmip\.key\.file.*wrong password/);
    assert.equal(output.includes('wrong-pass-123'), false);
  });

  it('stores and serves keys, answers 503 while PyKMIP is down and recovers by itself', async (t) => {
    const daemon = await EkmDaemon.start({ properties, env, dir: mkdtempSync(join(dir, 'daemon-')) });
    try {
      const email = 'kmip.user@kmip-e2e.example';
      const token = await idp.mint({ email, email_verified: true, sub: 'kmip-user' });
      const auth = { authorization: `Bearer ${token}` };
      const key = await makePrivateKey(email);
      const put = await fetch(`${daemon.baseUrl}/v1/keys/private`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ privateKey: key.armored }),
      });
      assert.equal(put.status, 200, await put.text());
      const getKeys = () => fetch(`${daemon.baseUrl}/v1/keys/private`, { headers: auth });
      const first = await getKeys();
      assert.equal(first.status, 200);
      assert.deepEqual(((await first.json()) as { privateKeys: { decryptedPrivateKey: string }[] }).privateKeys.map((k) => k.decryptedPrivateKey), [key.armored]);
      assert.equal((await fetch(`${daemon.baseUrl}/health`)).status, 200);

      const times: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const started = process.hrtime.bigint();
        const response = await getKeys();
        await response.arrayBuffer();
        times.push(Number(process.hrtime.bigint() - started) / 1e6);
        assert.equal(response.status, 200);
      }
      times.sort((a, b) => a - b);
      const at = (p: number) => times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)]!.toFixed(1);
      t.diagnostic(`authenticated GET /v1/keys/private through KmipStore (2 workers, pooled KMIP connections), ${ROUNDS} requests: median ${at(50)} ms, p99 ${at(99)} ms`);

      await kmip.stop();
      for (let i = 0; i < 4; i++) {
        const started = Date.now();
        const down = await getKeys();
        assert.equal(down.status, 503);
        const body = (await down.json()) as { code: number; message: string; details: string };
        assert.equal(body.code, 503);
        assert.ok(Date.now() - started < 11_000);
        assert.equal(JSON.stringify(body).includes('BEGIN PGP'), false);
      }
      const health = await fetch(`${daemon.baseUrl}/health`);
      assert.equal(health.status, 503);
      assert.match(await health.text(), /down/);

      await kmip.start();
      const back = await getKeys();
      assert.equal(back.status, 200);
      assert.equal(((await back.json()) as { privateKeys: unknown[] }).privateKeys.length, 1);
      assert.equal((await fetch(`${daemon.baseUrl}/health`)).status, 200);
    } finally {
      await daemon.stop();
    }
  });

  it('keeps two EKM instances (each with 2 workers) on one KMIP server consistent', async () => {
    const a = await EkmDaemon.start({ properties, env, dir: mkdtempSync(join(dir, 'instance-a-')) });
    const b = await EkmDaemon.start({ properties, env, dir: mkdtempSync(join(dir, 'instance-b-')) });
    try {
      const fingerprintsVia = async (daemon: EkmDaemon, token: string) => {
        const answer = await fetch(`${daemon.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(answer.status, 200);
        const body = (await answer.json()) as { privateKeys: { decryptedPrivateKey: string }[] };
        return body.privateKeys.map((k) => k.decryptedPrivateKey);
      };
      const put = (daemon: EkmDaemon, token: string, armored: string) =>
        fetch(`${daemon.baseUrl}/v1/keys/private`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ privateKey: armored }),
        });
      for (let i = 0; i < 3; i++) {
        const email = `two.instances.${i}@kmip-e2e.example`;
        const token = await idp.mint({ email, email_verified: true });
        const first = await makePrivateKey(email);
        assert.equal((await put(i % 2 === 0 ? a : b, token, first.armored)).status, 200);
        // Read through the other instance, several times so both of its workers answer.
        for (let j = 0; j < 4; j++) assert.deepEqual(await fingerprintsVia(i % 2 === 0 ? b : a, token), [first.armored]);
        const second = await makePrivateKey(email);
        assert.equal((await put(i % 2 === 0 ? b : a, token, second.armored)).status, 200);
        for (let j = 0; j < 4; j++) assert.deepEqual(await fingerprintsVia(i % 2 === 0 ? a : b, token), [first.armored, second.armored]);
      }
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
