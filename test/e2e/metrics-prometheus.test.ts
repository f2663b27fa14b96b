import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { EkmDaemon } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { freePort } from '../../testbed/processes.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

const AUDIENCE = 'ekm-metrics-e2e';
const KEYSTORE_PASSWORD = 'metrics e2e keystore 5c1e';
/** Every series the EKM itself exports (the process_* and nodejs_* ones come from prom-client). */
const EKM_SERIES = [
  'ekm_http_requests_total',
  'ekm_http_request_duration_seconds_bucket',
  'ekm_store_operations_total',
  'ekm_store_operation_duration_seconds_bucket',
  'ekm_store_up',
  'ekm_store_keys',
  'ekm_token_verifications_total',
  'ekm_jwks_fetches_total',
  'ekm_workers_alive',
  'ekm_worker_restarts_total',
];

/** The value of the one sample of `series` whose labels include `labels`, from a scrape. */
function sample(scrape: string, series: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of scrape.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m?.[1] !== series) continue;
    const found = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v) && Object.keys(found).length === Object.keys(labels).length) return Number(m[3]);
  }
  return undefined;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('end to end: Prometheus scrapes the daemon (2 workers, HTTPS API, plain-HTTP metrics)', () => {
  let dir: string;
  let pki: TestPki;
  let idp: OpenIdProvider;
  let ekm: EkmDaemon;
  let metricsUrl: string;
  let prometheus: ChildProcess | undefined;
  let prometheusOutput = '';
  const secrets: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-metrics-e2e-'));
    pki = new TestPki();
    const serverCert = pki.issue('ekm-server', { hosts: ['127.0.0.1'] });
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    ekm = await EkmDaemon.start({
      dir,
      scheme: 'https',
      ca: pki.caCertPem,
      env: { NODE_EXTRA_CA_CERTS: pki.caCertFile },
      properties: {
        ...baseProperties({ orgId: 'metrics.org', idp, audience: AUDIENCE }),
        'api.https.enabled': 'true',
        ...encryptedDbProperties(join(dir, 'db'), 'metrics e2e database passphrase'),
        'org.domains': 'example.com',
        'api.workers': '2',
        'api.https.key.file': pki.pkcs12(serverCert, KEYSTORE_PASSWORD, 'openssl'),
        'api.https.key.password': KEYSTORE_PASSWORD,
        'api.metrics.port': String(metricsPort),
      },
    });
  });

  after(async () => {
    if (prometheus?.exitCode === null) {
      const exited = once(prometheus, 'exit');
      process.kill(prometheus.pid!, 'SIGTERM');
      await exited;
    }
    await ekm?.stop('SIGKILL');
    await idp?.close();
    pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const call = (path: string, options: Parameters<typeof request>[1] = {}) => request(`${ekm.baseUrl}${path}`, { ca: pki.caCertPem, ...options });
  const scrape = async () => {
    const answer = await request(metricsUrl);
    assert.equal(answer.status, 200, answer.text);
    assert.match(String(answer.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    return answer.text;
  };

  it('aggregates the workers: requests by route pattern and status, store, tokens, JWKS, no identity in any label', async () => {
    const emails = ['alice.metrics@example.com', 'bob.metrics@example.com'];
    for (const email of emails) {
      const key = await makePrivateKey(email);
      const token = await idp.mint({ email, email_verified: true });
      secrets.push(email, key.fingerprint, token, key.fingerprint.slice(-16));
      const put = await call('/v1/keys/private', { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ privateKey: key.armored }) });
      assert.equal(put.status, 200, put.text);
      assert.equal((await call('/v1/keys/private', { headers: { authorization: `Bearer ${token}` } })).status, 200);
      assert.equal((await call(`/v1/keys/public/${email}`)).status, 200);
    }
    assert.equal((await call('/v1/keys/private', { headers: { authorization: 'Bearer not-a-token' } })).status, 401);
    assert.equal((await call('/health')).status, 200);
    assert.equal((await call(`/no/such/path/${emails[0]}`)).status, 404);

    const text = await scrape();
    // Fresh connections spread over both workers; the sums are the cluster's.
    assert.equal(sample(text, 'ekm_http_requests_total', { route: '/v1/keys/private', method: 'PUT', status: '200' }), 2);
    assert.equal(sample(text, 'ekm_http_requests_total', { route: '/v1/keys/private', method: 'GET', status: '200' }), 2);
    assert.equal(sample(text, 'ekm_http_requests_total', { route: '/v1/keys/public/:email', method: 'GET', status: '200' }), 2);
    assert.equal(sample(text, 'ekm_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' }), 1);
    assert.equal(sample(text, 'ekm_http_request_duration_seconds_count', { route: '/v1/keys/private', method: 'PUT' }), 2);
    assert.equal(sample(text, 'ekm_token_verifications_total', { outcome: 'ok' }), 4);
    assert.equal(sample(text, 'ekm_token_verifications_total', { outcome: 'ERR_TOKEN_MALFORMED' }), 1);
    assert.equal(sample(text, 'ekm_store_operations_total', { operation: 'upsert', outcome: 'ok' }), 2);
    assert.ok(sample(text, 'ekm_jwks_fetches_total', { outcome: 'ok' })! >= 1);
    assert.equal(sample(text, 'ekm_store_up'), 1);
    assert.equal(sample(text, 'ekm_store_keys'), 2);
    assert.equal(sample(text, 'ekm_workers_alive'), 2);
    assert.equal(sample(text, 'ekm_worker_restarts_total'), 0);
    assert.ok(sample(text, 'process_resident_memory_bytes')! > 0);
    for (const secret of secrets) assert.equal(text.toLowerCase().includes(secret.toLowerCase()), false, `the scrape carries ${secret.slice(0, 12)}...`);
  });

  it('passes promtool check metrics', async () => {
    const text = await scrape();
    const promtool = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    promtool.stdout.on('data', (d: Buffer) => (output += d.toString()));
    promtool.stderr.on('data', (d: Buffer) => (output += d.toString()));
    promtool.stdin.end(text);
    const [code] = (await once(promtool, 'exit')) as [number];
    assert.equal(code, 0, output);
    assert.equal(output.trim(), '', output);
  });

  it("is scraped by a real Prometheus whose query API returns the EKM's series", async () => {
    const promDir = join(dir, 'prometheus');
    const port = await freePort();
    const target = new URL(metricsUrl).host;
    const configFile = join(dir, 'prometheus.yml');
    writeFileSync(configFile, `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ekm\n    static_configs:\n      - targets: ['${target}']\n`);
    prometheus = spawn('/usr/bin/prometheus', [`--config.file=${configFile}`, `--storage.tsdb.path=${promDir}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    prometheus.stdout!.on('data', (d: Buffer) => (prometheusOutput += d.toString()));
    prometheus.stderr!.on('data', (d: Buffer) => (prometheusOutput += d.toString()));
    const api = `http://127.0.0.1:${port}/api/v1`;
    const query = async (q: string) => {
      const answer = await request(`${api}/query?query=${encodeURIComponent(q)}`);
      return answer.status === 200 && answer.json.data.result.length > 0 ? (answer.json.data.result as { metric: Record<string, string>; value: [number, string] }[]) : undefined;
    };
    try {
      const up = await until('Prometheus to scrape the EKM', () => query('up{job="ekm"} == 1'));
      assert.equal(up[0]!.value[1], '1');
      const puts = await until('the request series', () => query('ekm_http_requests_total{route="/v1/keys/private",method="PUT",status="200"}'));
      assert.equal(puts[0]!.value[1], '2');
      assert.equal((await until('workers alive', () => query('ekm_workers_alive')))[0]!.value[1], '2');
      const names = await request(`${api}/label/__name__/values`);
      for (const series of EKM_SERIES) assert.ok((names.json.data as string[]).includes(series), `${series} in ${names.text}`);
      assert.ok((names.json.data as string[]).includes('process_cpu_seconds_total'));
    } catch (e) {
      throw new Error(`${(e as Error).message}\nPrometheus output:\n${prometheusOutput.slice(-3000)}`, { cause: e });
    }
  });
  it('counts a replaced worker as a restart', async () => {
    const [victim] = ekm.workerPids();
    process.kill(victim!, 'SIGKILL');
    const text = await until('the replacement worker', async () => {
      const t = await scrape();
      return sample(t, 'ekm_worker_restarts_total') === 1 && sample(t, 'ekm_workers_alive') === 2 ? t : undefined;
    });
    assert.equal(sample(text, 'ekm_workers_alive'), 2);
    // The replacement starts its counters at zero, as Prometheus expects of a restarted target.
    assert.equal((await call('/')).status, 200);
  });

});
