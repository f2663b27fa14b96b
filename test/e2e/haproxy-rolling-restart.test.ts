/**
 * Two EKM instances (each the real daemon, 2 workers) behind a real HAProxy (Debian's 2.6), run from
 * the shipped example etc/haproxy/flowcrypt-ekm.cfg: under a bounded load through HAProxy, one is
 * stopped with SIGTERM and started again, then the other. No request may fail or be left without an
 * answer. The figures are printed.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { EkmDaemon, openIdProperties } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { describeLoad, runLoad } from '../support/http-load.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { freePort } from '../../testbed/processes.js';
import { TestPki } from '../../testbed/test-pki.js';

const HAPROXY = '/usr/sbin/haproxy';
const EXAMPLE = resolve(import.meta.dirname, '../../../etc/haproxy/flowcrypt-ekm.cfg');
const AUDIENCE = 'ekm-haproxy-e2e';
const EMAIL = 'rolling.user@example.com';

const skip = existsSync(HAPROXY) ? false : 'needs HAProxy (apt-get install haproxy)';

describe('end to end: two instances behind HAProxy, each stopped (SIGTERM) and started again under load', { skip, timeout: 300_000 }, () => {
  let dir: string;
  let pki: TestPki;
  let idp: OpenIdProvider;
  let haproxy: ChildProcess | undefined;
  let haproxyOutput = '';
  let frontend: string;
  let statsUrl: string;
  const ports: number[] = [];
  const instances: (EkmDaemon | undefined)[] = [];

  const startInstance = async (i: number) => {
    mkdirSync(join(dir, `ekm${i + 1}`), { recursive: true });
    instances[i] = await EkmDaemon.start({
      dir: join(dir, `ekm${i + 1}`),
      // Under the load of this test on a busy 2-core machine, a start takes tens of seconds.
      startTimeoutMs: 90_000,
      env: { NODE_EXTRA_CA_CERTS: pki.caCertFile },
      properties: {
        'org.id': 'haproxy.org',
        'api.port': String(ports[i]),
        'api.workers': '2',
        'api.https.enabled': 'false',
        'api.proxy.trusted': '127.0.0.1',
        // inter 1s x fall 2 in the example, and a check's own time.
        'api.drain.seconds': '4',
        'store.type': 'EncryptedDbStore',
        'store.db.folder': join(dir, `db${i + 1}`),
        'store.db.encryption.key': 'haproxy e2e database passphrase',
        ...openIdProperties(idp, AUDIENCE),
      },
    });
    return instances[i];
  };

  /** HAProxy's view of a server (UP, DOWN, MAINT...), from its CSV statistics. */
  const serverStatus = async (name: string): Promise<string | undefined> => {
    const csv = (await request(statsUrl)).text;
    return csv.split('\n').find((l) => l.startsWith(`ekm_hosts,${name},`))?.split(',')[17];
  };
  const waitForStatus = async (name: string, pattern: RegExp, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test((await serverStatus(name)) ?? '')) {
      if (Date.now() > deadline) assert.fail(`${name} not ${pattern} in HAProxy after ${timeoutMs} ms:\n${haproxyOutput}`);
      await sleep(100);
    }
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-haproxy-e2e-'));
    pki = new TestPki();
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
    ports.push(await freePort(), await freePort());
    await Promise.all([startInstance(0), startInstance(1)]);
    // Each instance has its own database here: the same key is stored in both.
    const key = await makePrivateKey(EMAIL);
    const token = await idp.mint({ email: EMAIL, email_verified: true });
    for (const ekm of instances) {
      const put = await request(`${ekm!.baseUrl}/v1/keys/private`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ privateKey: key.armored }) });
      assert.equal(put.status, 200, put.text);
    }
    // The shipped example, with this test's ports, and a statistics page to watch the servers' state.
    const frontendPort = await freePort();
    const statsPort = await freePort();
    let config = readFileSync(EXAMPLE, 'utf8');
    config = config.replace(/^(\s*bind )\S+$/m, `$1127.0.0.1:${frontendPort}`);
    config = config.replace(/^(\s*server ekm1 )\S+$/m, `$1127.0.0.1:${ports[0]}`).replace(/^(\s*server ekm2 )\S+$/m, `$1127.0.0.1:${ports[1]}`);
    assert.match(config, new RegExp(`server ekm2 127\\.0\\.0\\.1:${ports[1]}`));
    // HAProxy's log of each answer it made itself or passed on with a 5xx, to tell who failed.
    config = config.replace(/^global$/m, 'global\n    log stdout format raw local0').replace(/^defaults$/m, 'defaults\n    log global\n    option httplog\n    option dontlog-normal');
    config += `\nfrontend stats\n    bind 127.0.0.1:${statsPort}\n    stats enable\n    stats uri /stats\n`;
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, config);
    frontend = `http://127.0.0.1:${frontendPort}`;
    statsUrl = `http://127.0.0.1:${statsPort}/stats;csv`;
    haproxy = spawn(HAPROXY, ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout!.on('data', (d: Buffer) => (haproxyOutput += d.toString()));
    haproxy.stderr!.on('data', (d: Buffer) => (haproxyOutput += d.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        if ((await request(`${frontend}/health`, { timeoutMs: 2000 })).status === 200) break;
      } catch {
        // not listening yet
      }
      if (haproxy.exitCode !== null || Date.now() > deadline) assert.fail(`HAProxy did not start:\n${haproxyOutput}`);
      await sleep(100);
    }
    await waitForStatus('ekm1', /^UP/);
    await waitForStatus('ekm2', /^UP/);
  });

  after(async () => {
    if (haproxy?.exitCode === null) {
      const exited = once(haproxy, 'exit');
      haproxy.kill('SIGTERM');
      await exited;
    }
    for (const ekm of instances) await ekm?.stop('SIGKILL');
    await idp?.close();
    pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fails no request and leaves none hanging through a SIGTERM and a start of each instance in turn', async (t) => {
    const token = await idp.mint({ email: EMAIL, email_verified: true });
    let rollDone: () => void = () => undefined;
    const until = new Promise<void>((r) => (rollDone = r));
    const load = runLoad({
      urls: [`${frontend}/v1/keys/private`, `${frontend}/v1/keys/public/${EMAIL}`],
      connections: 32,
      durationMs: 10_000,
      until,
      headers: { authorization: `Bearer ${token}` },
      requestTimeoutMs: 15_000,
    });
    const steps: string[] = [];
    try {
      await sleep(2_000);
      for (const i of [0, 1]) {
        const name = `ekm${i + 1}`;
        const started = Date.now();
        const stopped = await instances[i]!.stop('SIGTERM');
        assert.equal(stopped.code, 0, instances[i]!.output.slice(-2000));
        steps.push(`${name} stopped in ${Date.now() - started} ms`);
        await waitForStatus(name, /^DOWN/);
        await startInstance(i);
        await waitForStatus(name, /^UP/);
        steps.push(`${name} back up ${Date.now() - started} ms after the SIGTERM`);
      }
      await sleep(1_000);
    } finally {
      rollDone();
    }
    const figures = await load;
    t.diagnostic(steps.join('; '));
    t.diagnostic(describeLoad('through HAProxy, two instances each stopped and started', figures));
    if (figures.samples.length > 0) t.diagnostic(`failures: ${figures.samples.join('; ')}\nHAProxy:\n${haproxyOutput.slice(-3000)}`);
    assert.equal(figures.failures, 0);
    assert.equal(figures.hanging, 0);
    assert.ok(figures.requests > 300, `${figures.requests} requests`);
  });
});
