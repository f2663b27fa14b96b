import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { CloudLoggingServer, type ReceivedEntry } from '../support/cloud-logging-server.js';
import { RedirectingConnectProxy } from '../support/redirecting-connect-proxy.js';
import { EkmDaemon } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { percentile } from '../support/percentile.js';
import { createTestServiceAccount, type TestServiceAccount } from '../support/service-account.js';
import { SplunkHecReceiver, type HecEvent } from '../support/splunk-hec-receiver.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

/*
 * The real daemon (primary + 1 worker) with StdoutLogger, SplunkHttpLogger and StackdriverLogger.
 * - Splunk: logger.splunk.url is the HTTPS stand-in; certificate validation stays on, the daemon
 *   trusts the test CA through NODE_EXTRA_CA_CERTS as an operator's host would trust its own CA.
 * - Cloud Logging: the daemon uses its default endpoint, logging.googleapis.com:443, unchanged. grpc-js
 *   honours `grpc_proxy`, so an HTTP CONNECT proxy sends that tunnel to the gRPC stand-in, whose
 *   certificate is for logging.googleapis.com from the test CA (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH).
 *   No OAuth: the library signs its own JWT with the service account key (see the stand-in), and
 *   the stand-in verifies it.
 */

const AUDIENCE = 'ekm-logging-e2e';
const SPLUNK_TOKEN = '5b1f0c3e-7d2a-4e8b-9c6f-1a2b3c4d5e6f';
const DB_PASSPHRASE = 'logging e2e database passphrase 93ac';

/** A TCP server that accepts connections and never answers: a hung collector, the worst case. */
async function blackhole(): Promise<{ server: Server; port: number; close: () => void }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

describe('end to end: what the real daemon sends to Splunk and Cloud Logging', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  let splunk: SplunkHecReceiver;
  let cloud: CloudLoggingServer;
  let proxy: RedirectingConnectProxy;
  let account: TestServiceAccount;
  let dir: string;
  const daemons: EkmDaemon[] = [];
  const stopped = new Set<EkmDaemon>();
  let hole: Awaited<ReturnType<typeof blackhole>> | undefined;

  const startDaemon = (options: { level: string; splunkUrl: string; grpcProxy: string; dbFolder: string; types?: string }) =>
    EkmDaemon.start({
      env: {
        NODE_EXTRA_CA_CERTS: pki.caCertFile,
        GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: pki.caCertFile,
        grpc_proxy: options.grpcProxy,
        no_grpc_proxy: 'none.invalid',
      },
      properties: {
        ...baseProperties({ orgId: 'logging-e2e.org', idp, audience: AUDIENCE }),
        ...encryptedDbProperties(options.dbFolder, DB_PASSPHRASE),
        'org.domains': 'example.com',
        'api.workers': '1',
        'logger.types': options.types ?? 'StdoutLogger,SplunkHttpLogger,StackdriverLogger',
        'logger.default.level': options.level,
        'logger.splunk.url': options.splunkUrl,
        'logger.splunk.token': SPLUNK_TOKEN,
        'logger.stackdriver.credentials.file': account.file,
      },
    }).then((daemon) => {
      daemons.push(daemon);
      return daemon;
    });

  const stop = async (daemon: EkmDaemon) => {
    stopped.add(daemon);
    return daemon.stop('SIGTERM');
  };

  /**
   * Authenticated GETs of the private keys, one to each daemon in turn, `count` rounds after a few
   * warm-up rounds; the sorted latencies (ms) per daemon.
   */
  const measureInTurn = async (targets: EkmDaemon[], token: string, count: number): Promise<number[][]> => {
    const times: number[][] = targets.map(() => []);
    for (let round = 0; round < count + 5; round++) {
      for (const [i, daemon] of targets.entries()) {
        const started = process.hrtime.bigint();
        const answer = await request(`${daemon.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${token}` } });
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        assert.equal(answer.status, 200, answer.text);
        if (round >= 5) times[i]?.push(ms); // the first rounds warm up the workers and their JWKS caches
      }
    }
    return times.map((t) => t.sort((a, b) => a - b));
  };

  before(async () => {
    pki = new TestPki();
    dir = mkdtempSync(join(tmpdir(), 'ekm-logging-e2e-'));
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    const splunkCert = pki.issue('splunk', { hosts: ['127.0.0.1'] });
    splunk = await SplunkHecReceiver.start({ token: SPLUNK_TOKEN, cert: splunkCert.certPem, key: splunkCert.keyPem });
    account = createTestServiceAccount(dir);
    const cloudCert = pki.issue('cloud-logging', { hosts: ['logging.googleapis.com'] });
    cloud = await CloudLoggingServer.start({
      cert: cloudCert.certPem,
      key: cloudCert.keyPem,
      serviceAccount: { email: account.email, publicKey: account.publicKey },
      projectId: account.projectId,
    });
    proxy = await RedirectingConnectProxy.start(() => cloud.port);
  });

  after(async () => {
    for (const daemon of daemons) if (!stopped.has(daemon)) await daemon.stop('SIGKILL');
    hole?.close();
    await splunk?.close();
    await cloud?.close();
    await proxy?.close();
    await idp?.close();
    pki?.remove();
  });

  it('audit entries of a PUT and a GET, the /error entry, levels filtered, no secret anywhere; a dead collector costs no latency', async () => {
    const daemon = await startDaemon({ level: 'info', splunkUrl: splunk.url, grpcProxy: proxy.url, dbFolder: mkdtempSync(join(dir, 'db-a-')) });
    const alice = await makePrivateKey('alice@example.com');
    const token = await idp.mint({ email: 'alice@example.com', email_verified: true });
    const auth = { authorization: `Bearer ${token}` };

    const put = await request(`${daemon.baseUrl}/v1/keys/private`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json', 'user-agent': 'FlowCrypt-E2E/1.0' },
      body: JSON.stringify({ privateKey: alice.armored }),
    });
    assert.equal(put.status, 200, put.text);
    const get = await request(`${daemon.baseUrl}/v1/keys/private`, { headers: { ...auth, 'user-agent': 'FlowCrypt-E2E/1.0' } });
    assert.equal(get.status, 200, get.text);
    // Secrets where a careless log line would pick them up: a query string, a refused token.
    const wrongAudience = await idp.mint({ email: 'alice@example.com', email_verified: true, aud: 'some-other-app' });
    const refused = await request(`${daemon.baseUrl}/v1/keys/private?access_token=${token}`, { headers: { authorization: `Bearer ${wrongAudience}` } });
    assert.equal(refused.status, 401, refused.text);
    const failing = await request(`${daemon.baseUrl}/error`);
    assert.equal(failing.status, 500);
    const putId = String(put.headers['x-request-id']);
    const getId = String(get.headers['x-request-id']);
    const errorId = String(failing.headers['x-request-id']);

    // --- Splunk
    const fields = (e: HecEvent) => e.event;
    const splunkEvents = await splunk.waitFor(
      (events) =>
        events.some((e) => fields(e).requestId === putId && fields(e).audit !== undefined) &&
        events.some((e) => fields(e).requestId === getId && fields(e).audit !== undefined) &&
        events.some((e) => fields(e).requestId === getId && fields(e).message === 'request') &&
        events.some((e) => fields(e).requestId === errorId && fields(e).level === 'error'),
      15_000,
    );
    const splunkPut = splunkEvents.find((e) => fields(e).requestId === putId && fields(e).audit === 'private-key.write');
    const splunkGet = splunkEvents.find((e) => fields(e).requestId === getId && fields(e).audit === 'private-key.read');
    assert.ok(splunkPut && splunkGet, 'the audit entries of the PUT and the GET reach Splunk');
    for (const entry of [fields(splunkPut), fields(splunkGet)]) {
      assert.equal(entry.level, 'info');
      assert.equal(entry.email, 'alice@example.com');
      assert.deepEqual(
        (entry.fingerprints as string[]).map((f) => f.toUpperCase()),
        [alice.fingerprint.toUpperCase()],
      );
      assert.equal(entry.status, 200);
      assert.equal(typeof entry.clientAddress, 'string');
      assert.equal(entry.userAgent, 'FlowCrypt-E2E/1.0');
      assert.match(String(entry.worker), /^worker-/);
    }
    const splunkError = splunkEvents.find((e) => fields(e).requestId === errorId && fields(e).level === 'error');
    assert.ok(splunkError, 'GET /error gives an error-level entry in Splunk');
    assert.ok(
      splunkEvents.some((e) => fields(e).requestId === getId && fields(e).path === '/v1/keys/private' && fields(e).status === 200),
      'the access line of the GET',
    );
    assert.ok(!splunkEvents.some((e) => ['debug', 'trace'].includes(String(fields(e).level))), 'nothing below info at logger.default.level=info');
    assert.ok(splunk.requests.every((r) => r.headers.authorization === `Splunk ${SPLUNK_TOKEN}` && r.status === 200));

    // --- Cloud Logging
    const json = (e: ReceivedEntry) => (e.jsonPayload?.metadata ?? {}) as Record<string, unknown>;
    const cloudEntries = await cloud.waitFor(
      (entries) =>
        entries.some((e) => json(e).requestId === putId && json(e).audit !== undefined) &&
        entries.some((e) => json(e).requestId === getId && json(e).audit !== undefined) &&
        entries.some((e) => json(e).requestId === errorId && e.severity === 'ERROR'),
      15_000,
    );
    const cloudPut = cloudEntries.find((e) => json(e).requestId === putId && json(e).audit === 'private-key.write');
    const cloudGet = cloudEntries.find((e) => json(e).requestId === getId && json(e).audit === 'private-key.read');
    assert.ok(cloudPut && cloudGet, 'the audit entries of the PUT and the GET reach Cloud Logging');
    assert.equal(cloudPut.severity, 'INFO');
    assert.equal(json(cloudPut).email, 'alice@example.com');
    assert.deepEqual(json(cloudGet).fingerprints, fields(splunkGet).fingerprints);
    assert.equal(cloudPut.logName, `projects/${account.projectId}/logs/flowcrypt-ekm`);
    assert.ok(
      cloudEntries.some((e) => json(e).requestId === errorId && e.severity === 'ERROR'),
      'GET /error gives an ERROR entry in Cloud Logging',
    );
    assert.ok(!cloudEntries.some((e) => e.severity === 'DEBUG'), 'nothing below info');
    assert.ok(proxy.targets.length > 0 && proxy.targets.every((t) => t === 'logging.googleapis.com:443'), `CONNECT targets: ${proxy.targets.join(', ')}`);
    assert.deepEqual(cloud.refusals, []);

    // --- No secret anywhere: the ID token, the key material, the Authorization header, the HEC token.
    const keyBody = alice.armored.split('\n').filter((l) => l.length > 40)[1]!;
    const everything = [daemon.output, JSON.stringify(splunkEvents), ...splunk.requests.map((r) => r.body), JSON.stringify(cloudEntries)].join('\n');
    for (const [name, secret] of [
      ['ID token', token],
      ['token signature', token.split('.')[2]!],
      ['refused token', wrongAudience.split('.')[2]!],
      ['key material', keyBody],
      ['armor header', 'PRIVATE KEY BLOCK'],
      ['Authorization header', 'Bearer '],
      ['HEC token', SPLUNK_TOKEN],
    ] as const) {
      assert.ok(!everything.includes(secret), `${name} found in the logs`);
    }

    // --- Latency: three daemons side by side, one request to each in turn so that they share the
    // machine's load alike: collectors up (this one), stdout only, and collectors that never answer.
    hole = await blackhole();
    const stdoutOnly = await startDaemon({
      level: 'info',
      types: 'StdoutLogger',
      splunkUrl: splunk.url,
      grpcProxy: proxy.url,
      dbFolder: mkdtempSync(join(dir, 'db-c-')),
    });
    const deadDaemon = await startDaemon({
      level: 'debug',
      splunkUrl: `https://127.0.0.1:${hole.port}`,
      grpcProxy: `http://127.0.0.1:${hole.port}`,
      dbFolder: mkdtempSync(join(dir, 'db-b-')),
    });
    for (const other of [stdoutOnly, deadDaemon]) {
      const stored = await request(`${other.baseUrl}/v1/keys/private`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ privateKey: alice.armored }),
      });
      assert.equal(stored.status, 200, stored.text);
    }
    const [live = [], baseline = [], dead = []] = await measureInTurn([daemon, stdoutOnly, deadDaemon], token, 60);
    const line = (name: string, t: number[]) =>
      `${name}: median ${percentile(t, 50).toFixed(1)} ms, p95 ${percentile(t, 95).toFixed(1)} ms, max ${t.at(-1)?.toFixed(1)} ms`;
    console.log('GET /v1/keys/private, 60 requests to each daemon in turn, 1 worker each (each request logs an access line and an audit entry)');
    console.log(line('stdout only                   ', baseline));
    console.log(line('+ Splunk, Cloud Logging up    ', live));
    console.log(line('+ both never answer (hung TCP)', dead));
    // Generous margins: the machine is shared with other tests; a collector that slowed requests
    // would cost its timeouts (seconds), not milliseconds.
    assert.ok(percentile(dead, 50) < percentile(baseline, 50) + 10, 'a dead collector must not slow requests noticeably');
    assert.ok(percentile(dead, 95) < percentile(baseline, 95) + 100);
    await stop(daemon);
    await stop(stdoutOnly);

    // The level filter is not vacuous: at debug the same daemon does write debug entries.
    await sleep(100);
    const result = await stop(deadDaemon);
    assert.equal(result.code, 0);
    assert.match(deadDaemon.output, /"level":"debug"/);
    assert.match(deadDaemon.output, /Log output SplunkHttpLogger lost entries/, 'a line on stdout says entries were lost');
    assert.match(deadDaemon.output, /Log output StackdriverLogger lost entries/);
  });
});
