/**
 * Readiness, reload and stop of the real daemon (2 workers, HTTPS) under a fake service manager
 * (NOTIFY_SOCKET) and the unit's reload command (`flowcrypt-ekm --reload`, reading its verdict from
 * RUNTIME_DIRECTORY as under systemd): a reload under a bounded load of 32 connections fails no
 * request, serves the new certificate and the new log level, keeps restart-only properties; an
 * invalid configuration is refused while the old one keeps serving.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { EkmDaemon, openIdProperties, runEkm, writeProperties } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { describeLoad, runLoad } from '../support/http-load.js';
import { NotifySocket } from '../support/notify-socket.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { freePort } from '../../testbed/processes.js';
import { TestPki } from '../../testbed/test-pki.js';

const AUDIENCE = 'ekm-reload-e2e';
const EMAIL = 'reload.user@example.com';
const KEYSTORE_PASSWORD = 'reload keystore password';

/** The serial number of the certificate the server presents on a new connection. */
function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: undefined }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('end to end: readiness, reload under load and stop, as systemd drives them', { timeout: 180_000 }, () => {
  let dir: string;
  let runtimeDir: string;
  let pki: TestPki;
  let idp: OpenIdProvider;
  let notify: NotifySocket;
  let ekm: EkmDaemon;
  let port: number;
  let properties: Record<string, string>;
  let env: NodeJS.ProcessEnv;
  let auth: Record<string, string>;

  const reload = () => runEkm([`--config=${ekm.configFile}`, `--reload=${ekm.process.pid}`], { env });
  const jsonLines = () =>
    ekm.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-reload-e2e-'));
    runtimeDir = mkdtempSync(join(tmpdir(), 'ekm-reload-run-'));
    pki = new TestPki();
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    notify = await NotifySocket.start();
    port = await freePort();
    env = { NODE_EXTRA_CA_CERTS: pki.caCertFile, NOTIFY_SOCKET: notify.path, RUNTIME_DIRECTORY: runtimeDir };
    properties = {
      'org.id': 'reload.org',
      'api.hostname': '127.0.0.1',
      'api.port': String(port),
      'api.workers': '2',
      'api.https.enabled': 'true',
      'api.https.key.file': pki.pkcs12(pki.issue('ekm-before', { hosts: ['127.0.0.1'] }), KEYSTORE_PASSWORD, 'openssl'),
      'api.https.key.password': KEYSTORE_PASSWORD,
      'store.type': 'EncryptedDbStore',
      'store.db.folder': join(dir, 'db'),
      'store.db.encryption.key': 'reload e2e database passphrase',
      'logger.default.level': 'info',
      ...openIdProperties(idp, AUDIENCE),
    };
    ekm = await EkmDaemon.start({ properties, env, dir, scheme: 'https', ca: pki.caCertPem });
    auth = { authorization: `Bearer ${await idp.mint({ email: EMAIL, email_verified: true })}` };
    const key = await makePrivateKey(EMAIL);
    const put = await request(`${ekm.baseUrl}/v1/keys/private`, { method: 'PUT', ca: pki.caCertPem, headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ privateKey: key.armored }) });
    assert.equal(put.status, 200, put.text);
  });

  after(async () => {
    await ekm?.stop('SIGKILL');
    await notify?.close();
    await idp?.close();
    pki?.remove();
    for (const d of [dir, runtimeDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('tells the service manager READY=1 once, when every worker listens', async () => {
    const ready = await notify.waitFor(/^READY=1/);
    assert.match(ready, /STATUS=EKM listening on https:\/\/127\.0\.0\.1:\d+ with 2 workers/);
    assert.equal(notify.messages.filter((m) => m.startsWith("READY=1")).length, 1);
    assert.match(ekm.output, /"message":"EKM listening on/);
  });

  it('reloads under 32 connections for 12 s: no failed request, no reset; the new certificate and log level served, restart-only properties kept and named', async (t) => {
    const serialBefore = await servedSerial(port, pki.caCertPem);
    const notifiedBefore = notify.messages.length;
    let reloadDone: () => void = () => undefined;
    const until = new Promise<void>((r) => (reloadDone = r)).then(() => sleep(1_000));
    const load = runLoad({
      until,
      urls: [`${ekm.baseUrl}/v1/keys/private`, `${ekm.baseUrl}/v1/keys/public/${EMAIL}`, `${ekm.baseUrl}/health`],
      connections: 32,
      durationMs: 12_000,
      headers: auth,
      ca: pki.caCertPem,
    });
    await sleep(3_000);
    const otherPort = String(await freePort());
    properties = {
      ...properties,
      'api.https.key.file': pki.pkcs12(pki.issue('ekm-after', { hosts: ['127.0.0.1'] }), KEYSTORE_PASSWORD, 'openssl'),
      'logger.default.level': 'warn',
      'api.port': otherPort,
    };
    writeProperties(dir, properties);
    const started = Date.now();
    const reloaded = await reload();
    const reloadMs = Date.now() - started;
    reloadDone();
    const figures = await load;
    t.diagnostic(describeLoad(`reload under load (reload took ${reloadMs} ms)`, figures));
    if (figures.samples.length > 0) t.diagnostic(`failures: ${figures.samples.join('; ')}`);
    assert.equal(reloaded.code, 0, reloaded.output);
    assert.match(reloaded.output, /Reloaded .*changed: api\.https\.key\.file, logger\.default\.level; kept until a restart: api\.port/);
    assert.match(ekm.output, /Reloading .*kept until a restart: api\.port/);
    assert.equal(figures.failures, 0);
    assert.equal(figures.resets, 0);
    assert.ok(figures.requests > 300, `${figures.requests} requests`);

    // api.port kept its value: the service still answers where it did.
    const serialAfter = await servedSerial(port, pki.caCertPem);
    assert.notEqual(serialAfter, serialBefore, 'the new certificate is served');
    assert.match(notify.messages.slice(notifiedBefore).join('\n'), /RELOADING=1[^\n]*\n(?:[^\n]*\n)*READY=1/);

    // warn from now on: no access line for a new request, but its audit entry, whatever the level.
    const marker = 'after-reload-level-check';
    const got = await request(`${ekm.baseUrl}/v1/keys/private`, { ca: pki.caCertPem, headers: { ...auth, 'user-agent': marker } });
    assert.equal(got.status, 200);
    const requestId = got.headers['x-request-id'];
    await sleep(500);
    const mine = jsonLines().filter((e) => e.requestId === requestId);
    assert.ok(mine.some((e) => e.audit === 'private-key.read' && e.userAgent === marker), 'the audit entry is written at warn');
    assert.ok(!mine.some((e) => e.message === 'request'), 'no info access line at warn');
  });

  it('refuses an invalid configuration, from the reload command (exit 78) and from SIGHUP alone, and keeps serving the old one', async () => {
    writeProperties(dir, { ...properties, 'logger.default.level': 'loud' });
    const refused = await reload();
    assert.equal(refused.code, 78, refused.output);
    assert.match(refused.output, /\[loud\] is not a valid option for property \[logger.default.level\]/);
    // The primary refuses it on its own too (a SIGHUP sent by hand), with the reason in its log.
    const notifiedBefore = notify.messages.length;
    process.kill(ekm.process.pid!, 'SIGHUP');
    await notify.waitFor(/^READY=1/, notifiedBefore);
    assert.match(ekm.output, /Reload refused, still serving with the configuration loaded before: \[loud\] is not a valid option/);
    const verdict = JSON.parse(readFileSync(join(runtimeDir, 'reload-verdict.json'), 'utf8')) as { status: number; message: string };
    assert.equal(verdict.status, 78);
    // Still serving, with the configuration of the last good reload.
    assert.equal((await request(`${ekm.baseUrl}/v1/keys/private`, { ca: pki.caCertPem, headers: auth })).status, 200);
    writeProperties(dir, properties);
  });

  it('tells the service manager STOPPING=1 on SIGTERM and exits 0', async () => {
    const notifiedBefore = notify.messages.length;
    const stopped = await ekm.stop('SIGTERM');
    assert.equal(stopped.code, 0, ekm.output.slice(-2000));
    await notify.waitFor(/^STOPPING=1/, notifiedBefore);
  });
});
