/**
 * The Debian package, end to end: build it, boot a clean Debian 12 with systemd-nspawn, install it
 * there with apt, and talk to the service as an operator and a client app would; then restart,
 * upgrade, remove and purge. Plus lintian, `systemd-analyze verify` and `systemd-analyze security`.
 *
 * Slow (a few minutes) and root-only, so `npm test` skips it: .ci/package-test runs it with
 * EKM_PACKAGE_TEST=1. The Debian root file system is cached by test/package/rootfs.sh.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as openpgp from 'openpgp';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { freePort } from '../../testbed/processes.js';
import { TestPki } from '../../testbed/test-pki.js';
import { NspawnContainer, run, type RunResult } from './nspawn-container.js';

const REPO = resolve(import.meta.dirname, '../../..');
const CONFIG = '/etc/flowcrypt-ekm/flowcrypt-email-key-manager.properties';
const ENVIRONMENT = '/etc/default/flowcrypt-ekm';
const DATA = '/var/lib/flowcrypt-ekm';
const UNIT = 'flowcrypt-ekm.service';
/** `systemd-analyze security` exposure (0-10) the unit must not exceed. */
const MAX_EXPOSURE = 2.0;
const AUDIENCE = 'ekm-package-test';
/** What Node.js writes on stderr for a runtime or deprecation warning: "(node:1234) [DEP0040] DeprecationWarning: ...". */
const NODE_WARNING = /\(node:\d+\)|\b[A-Z]\w*Warning: /;
const EMAIL = 'alice@example.com';

function skipReason(): string | false {
  if (process.env.EKM_PACKAGE_TEST !== '1') {
    return 'the Debian package test boots a container and takes minutes: run it with .ci/package-test (or EKM_PACKAGE_TEST=1)';
  }
  if (process.getuid?.() !== 0) return 'the Debian package test needs root (debootstrap, systemd-nspawn)';
  for (const tool of ['systemd-nspawn', 'nsenter', 'debootstrap', 'dpkg-deb', 'lintian', 'systemd-analyze']) {
    if (!['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => existsSync(join(d, tool)))) {
      return `the Debian package test needs ${tool} (apt-get install debootstrap systemd-container lintian dpkg-dev)`;
    }
  }
  return false;
}

function ok(result: RunResult, what: string): string {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code})\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
  return result.stdout;
}

const skip = skipReason();

describe('Debian package in a booted Debian 12', { skip, timeout: 15 * 60_000 }, () => {
  let work: string;
  let deb: string;
  let upgradeDeb: Promise<string>;
  let lintian: Promise<RunResult>;
  let container: NspawnContainer;
  let pki: TestPki;
  let idp: OpenIdProvider;
  let port: number;
  let version: string;
  let upgradeVersion: string;
  let failed = false;

  const buildPackage = async (dist: string, env: Record<string, string>): Promise<string> => {
    const started = Date.now();
    const out = ok(await run('bash', ['scripts/package.sh'], { cwd: REPO, env: { ...process.env, EKM_DEB_DIST: dist, ...env }, timeoutMs: 20 * 60_000 }), 'scripts/package.sh');
    process.stdout.write(`# ${out.trim()} in ${Math.round((Date.now() - started) / 1000)} s\n`);
    return join(dist, 'ekm.deb');
  };

  /** GET on the service from inside the container, with a deadline: `systemctl start` returns before node listens (or dies). */
  const waitForHttp = async (path: string, expectedStatus = 200, deadlineMs = 30_000): Promise<string> => {
    const deadline = Date.now() + deadlineMs;
    let last: RunResult | undefined;
    while (Date.now() < deadline) {
      last = await container.exec(['curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`]);
      const status = Number(last.stdout.slice(last.stdout.lastIndexOf('\n') + 1));
      if (last.code === 0 && status === expectedStatus) return last.stdout.slice(0, last.stdout.lastIndexOf('\n'));
      await sleep(250);
    }
    const journal = await container.exec(['journalctl', '-u', UNIT, '--no-pager', '-n', '60']);
    assert.fail(`GET ${path} did not answer ${expectedStatus} in ${deadlineMs} ms: ${last?.stdout}${last?.stderr}\n--- journal\n${journal.stdout}`);
  };

  const unitProperty = async (name: string): Promise<string> =>
    (await container.sh(`systemctl show -P ${name} ${UNIT}`)).trim();

  const api = async (method: 'GET' | 'PUT', path: string, token: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
    // The container shares the host's network: its 127.0.0.1 is ours.
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, json: await response.json() };
  };

  const token = () => idp.mint({ email: EMAIL, email_verified: true });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'ekm-package-test-'));
    version = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;
    upgradeVersion = `${version}+upgradetest1`;
    // The root file system first: on a fresh machine it is built now (1-2 minutes), then cached.
    const tarball = ok(await run('bash', [join(REPO, 'test/package/rootfs.sh')], { timeoutMs: 15 * 60_000 }), 'test/package/rootfs.sh').trim();
    deb = await buildPackage(join(work, 'dist'), {});
    // lintian (about a minute) and the upgrade package are made while the container runs. lintian
    // refuses to run as root without complaint, so it runs as nobody.
    chmodSync(work, 0o755);
    chmodSync(dirname(deb), 0o755);
    lintian = run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'lintian', '--fail-on', 'error,warning', deb], {
      env: { ...process.env, HOME: '/tmp' },
    });
    upgradeDeb = buildPackage(join(work, 'dist-upgrade'), { EKM_DEB_VERSION: upgradeVersion, EKM_DEB_COMPRESSION: 'gzip' });
    upgradeDeb.catch(() => undefined);
    container = await NspawnContainer.boot(tarball, '/var/tmp');
    pki = new TestPki('EKM package test CA');
    const cert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: cert.keyPem, cert: cert.certPem }, audience: AUDIENCE });
    port = await freePort();
  });

  after(async () => {
    if (failed && container !== undefined) {
      const journal = await container.exec(['journalctl', '-u', UNIT, '--no-pager', '-n', '100']);
      process.stdout.write(`# journal of ${UNIT} after a failure:\n${journal.stdout.replace(/^/gm, '# ')}\n`);
    }
    await container?.destroy();
    await idp?.close();
    await upgradeDeb?.catch(() => undefined);
    await lintian?.catch(() => undefined);
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  const step = (name: string, fn: () => Promise<void>): void => {
    it(name, async (t) => {
      if (failed) {
        t.skip('an earlier step failed');
        return;
      }
      try {
        await fn();
      } catch (e) {
        failed = true;
        throw e;
      }
    });
  };

  step('installs with apt on a system that has only the base packages', async () => {
    writeFileSync(container.path('/root/ekm.deb'), readFileSync(deb));
    ok(await container.exec(['sh', '-c', 'cd /root && apt-get install -y ./ekm.deb'], { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 120_000 }), 'apt-get install ./ekm.deb');
    assert.equal((await container.sh("dpkg-query -W -f '${Status} ${Version}' flowcrypt-ekm")).trim(), `install ok installed ${version}`);
  });

  step('creates the system user, the configuration (root:flowcrypt-ekm 0640) with a random passphrase, and the data folder', async () => {
    const [, , uid, , , home, shell] = (await container.sh('getent passwd flowcrypt-ekm')).trim().split(':');
    assert.ok(Number(uid) < 1000, `a system user, uid ${uid}`);
    assert.equal(home, DATA);
    assert.equal(shell, '/usr/sbin/nologin');
    assert.equal((await container.sh(`stat -c '%U:%G %a' ${CONFIG}`)).trim(), 'root:flowcrypt-ekm 640');
    assert.equal((await container.sh('stat -c \'%U:%G %a\' /etc/flowcrypt-ekm')).trim(), 'root:flowcrypt-ekm 750');
    assert.equal((await container.sh(`stat -c '%U:%G %a' ${DATA}`)).trim(), 'flowcrypt-ekm:flowcrypt-ekm 700');
    const config = readFileSync(container.path(CONFIG), 'utf8');
    assert.match(config, /^store\.db\.encryption\.key=[0-9a-f]{64}$/m);
    assert.match(config, /^store\.type=EncryptedDbStore$/m);
    assert.match(config, /^auth\.openid\.issuer=https:\/\/accounts\.google\.com$/m);
    assert.equal((await container.sh(`stat -c '%U:%G %a' ${ENVIRONMENT}`)).trim(), 'root:root 644');
    assert.match(await container.sh('dpkg-query -W -f \'${Conffiles}\' flowcrypt-ekm'), /\/etc\/default\/flowcrypt-ekm [0-9a-f]{32}/);
    // Enabled for the next boot, but not started before the operator has configured it.
    assert.equal((await container.exec(['systemctl', 'is-enabled', UNIT])).stdout.trim(), 'enabled');
    assert.equal((await container.exec(['systemctl', 'is-active', UNIT])).stdout.trim(), 'inactive');
    assert.ok(existsSync(container.path('/usr/share/doc/flowcrypt-ekm/copyright')));
    // The operator guide the man page names, whole (the agreement of its property list with the
    // schema is test/docs/operator-guide.test.ts).
    const guide = readFileSync(container.path('/usr/share/doc/flowcrypt-ekm/operator-guide.md'), 'utf8');
    assert.equal(guide, readFileSync(resolve(import.meta.dirname, '../../../docs/operator-guide.md'), 'utf8'));
    assert.ok(existsSync(container.path('/usr/share/doc/flowcrypt-ekm/security.md')));
    assert.match(await container.sh('zcat /usr/share/man/man1/flowcrypt-ekm.1.gz'), /operator-guide\.md/);
    assert.ok(existsSync(container.path('/usr/share/doc/flowcrypt-ekm/examples/flowcrypt-email-key-manager.properties')));
  });

  const assertNoNodeWarning = (output: string, what: string) =>
    assert.doesNotMatch(output, NODE_WARNING, `Node.js printed a warning in ${what}:\n${output}`);

  step('puts flowcrypt-ekm on the PATH, running the bundled Node.js 24, which prints no warning', async () => {
    // The runtime that built and tested the package (scripts/node24.sh's) is the one it carries.
    assert.equal((await container.sh('/usr/lib/flowcrypt-ekm/bin/node --version')).trim(), process.version);
    assert.match(process.version, /^v24\./);
    const versionOutput = await container.sh('flowcrypt-ekm --version 2>&1');
    assert.equal(versionOutput.trim(), `flowcrypt-ekm ${version}`);
    const help = await container.sh('flowcrypt-ekm --help 2>&1');
    assert.match(help, /--test-store-connection/);
    assertNoNodeWarning(help, 'flowcrypt-ekm --help');
    assert.notEqual((await container.exec(['sh', '-c', 'command -v node'])).code, 0, 'no node on the PATH of the base system');
  });

  step('flowcrypt-ekm --test-store-connection succeeds with the installed configuration, run by root', async () => {
    const out = await container.sh('cd /root && flowcrypt-ekm --test-store-connection 2>&1');
    assert.match(out, /success/);
    assertNoNodeWarning(out, 'flowcrypt-ekm --test-store-connection');
    // Run by root, it ran as the service user: the database files it made stay usable by the service.
    assert.equal((await container.sh(`find ${DATA} ! -user flowcrypt-ekm`)).trim(), '');
  });

  step('the unit passes systemd-analyze verify (no output at all) inside the system', async () => {
    const result = await container.exec(['systemd-analyze', 'verify', UNIT]);
    assert.equal(`${result.stdout}${result.stderr}`, '', 'systemd-analyze verify printed something');
    assert.equal(result.code, 0);
  });

  /** One GET from inside the container, no retry: the status and the body. */
  const curlOnce = async (path: string): Promise<{ status: number; body: string }> => {
    const result = await container.exec(['curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`]);
    const at = result.stdout.lastIndexOf('\n');
    return { status: Number(result.stdout.slice(at + 1)), body: result.stdout.slice(0, at) };
  };

  step('starts with the installed configuration: systemctl start returns once the API answers (Type=notify)', async () => {
    setProperties({ 'api.port': String(port) });
    assert.equal(await unitProperty('Type'), 'notify');
    await container.sh(`systemctl start ${UNIT}`);
    // The very first request after systemctl start returns, without waiting or retrying.
    const first = await curlOnce('/');
    assert.equal(first.status, 200, first.body);
    const root = JSON.parse(await waitForHttp('/'));
    assert.equal(root.service, 'email-key-manager');
    const health = JSON.parse(await waitForHttp('/health'));
    assert.equal(health.storeType, 'EncryptedDbStore');
    assert.equal(health.storeStatus, 'up');
    assert.equal(await unitProperty('User'), 'flowcrypt-ekm');
    assert.equal(await unitProperty('NRestarts'), '0');
    // A core dump would hold decrypted keys: the running primary has no core file size to write.
    assert.equal(await unitProperty('LimitCORE'), '0');
    assert.match(await container.sh(`cat /proc/${await unitProperty('MainPID')}/limits`), /^Max core file size\s+0\s+0\s/m);
  });

  step('stores and returns a private key, with a token of an identity provider configured in /etc', async () => {
    // The provider's settings and its CA, as an operator of an internal IdP would set them.
    writeFileSync(container.path('/etc/flowcrypt-ekm/test-idp-ca.pem'), pki.caCertPem, { mode: 0o644 });
    const environment = readFileSync(container.path(ENVIRONMENT), 'utf8');
    writeFileSync(container.path(ENVIRONMENT), `${environment}NODE_EXTRA_CA_CERTS=/etc/flowcrypt-ekm/test-idp-ca.pem\n`);
    setProperties({ 'auth.openid.issuer': idp.issuer, 'auth.openid.jwks': idp.jwksUri, 'auth.openid.audience': AUDIENCE });
    await container.sh(`systemctl restart ${UNIT}`);
    await waitForHttp('/health');
    const { privateKey } = await openpgp.generateKey({ userIDs: [{ email: EMAIL }], type: 'curve25519', format: 'armored' });
    fingerprint = (await openpgp.readPrivateKey({ armoredKey: privateKey })).getFingerprint();
    const put = await api('PUT', '/v1/keys/private', await token(), { privateKey });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    await assertKeyServed();
    assert.ok(idp.jwksRequests > 0, 'the service fetched the JWKS from the test IdP');
  });

  let fingerprint = '';
  const assertKeyServed = async () => {
    const got = await api('GET', '/v1/keys/private', await token());
    assert.equal(got.status, 200, JSON.stringify(got.json));
    const { privateKeys } = got.json as { privateKeys: { decryptedPrivateKey: string }[] };
    assert.equal(privateKeys.length, 1);
    const key = await openpgp.readPrivateKey({ armoredKey: privateKeys[0]!.decryptedPrivateKey });
    assert.equal(key.getFingerprint(), fingerprint);
  };

  const setProperties = (values: Readonly<Record<string, string>>) => {
    // Written through the container's root from the host: same inode, so owner and mode stay.
    let text = readFileSync(container.path(CONFIG), 'utf8');
    for (const [name, value] of Object.entries(values)) {
      const pattern = new RegExp(`^#?${name.replace(/\./g, '\\.')}=.*$`, 'm');
      assert.match(text, pattern, `${name} in ${CONFIG}`);
      text = text.replace(pattern, `${name}=${value}`);
    }
    writeFileSync(container.path(CONFIG), text);
  };

  step('systemctl restart keeps the key', async () => {
    const before = await unitProperty('MainPID');
    await container.sh(`systemctl restart ${UNIT}`);
    await waitForHttp('/health');
    assert.notEqual(await unitProperty('MainPID'), before);
    await assertKeyServed();
    assert.equal(await unitProperty('NRestarts'), '0');
  });

  const journalSince = async (cursorFile: string): Promise<string> =>
    ok(await container.exec(['journalctl', '-u', UNIT, '--no-pager', '-o', 'cat', `--cursor-file=${cursorFile}`]), 'journalctl');

  step('systemctl reload applies a new configuration without a restart, and a broken one fails the reload while the service keeps serving', async () => {
    const pid = await unitProperty('MainPID');
    await journalSince('/root/reload.cursor');
    setProperties({ 'logger.default.level': 'warn' });
    const reloaded = await container.exec(['systemctl', 'reload', UNIT]);
    assert.equal(reloaded.code, 0, `${reloaded.stdout}${reloaded.stderr}`);
    assert.equal(await unitProperty('MainPID'), pid, 'the same primary');
    assert.equal(await unitProperty('ActiveState'), 'active');
    assert.match(await journalSince('/root/reload.cursor'), /Reloaded .*changed: logger\.default\.level/);
    await assertKeyServed();

    setProperties({ 'logger.default.level': 'loud' });
    const refused = await container.exec(['systemctl', 'reload', UNIT]);
    assert.notEqual(refused.code, 0, 'a broken configuration fails systemctl reload');
    assert.match(await journalSince('/root/reload.cursor'), /\[loud\] is not a valid option for property \[logger\.default\.level\]/);
    assert.equal(await unitProperty('ActiveState'), 'active');
    assert.equal(await unitProperty('MainPID'), pid);
    await assertKeyServed();
    setProperties({ 'logger.default.level': 'info' });
    assert.equal((await container.exec(['systemctl', 'reload', UNIT])).code, 0);
  });

  step('a broken configuration leaves the unit failed (exit 78) with the reason in the journal, not restarting', async () => {
    await container.sh(`systemctl stop ${UNIT}`);
    await journalSince('/root/broken.cursor');
    setProperties({ 'api.port': 'not-a-port' });
    const started = await container.exec(['systemctl', 'start', UNIT]);
    assert.notEqual(started.code, 0, 'systemctl start fails');
    // Past RestartSec=5s: a configuration error is not restarted.
    await sleep(7_000);
    assert.equal(await unitProperty('ActiveState'), 'failed');
    assert.equal(await unitProperty('ExecMainStatus'), '78');
    assert.equal(await unitProperty('NRestarts'), '0');
    assert.match(await journalSince('/root/broken.cursor'), /\[not-a-port\] is not a valid option for property \[api\.port\]/);
    setProperties({ 'api.port': String(port) });
    await container.sh(`systemctl reset-failed ${UNIT}; systemctl start ${UNIT}`);
    assert.equal((await curlOnce('/')).status, 200);
  });

  step('Node.js printed no runtime or deprecation warning in the service (three starts, a PUT, GETs, JWKS over HTTPS)', async () => {
    const journal = ok(await container.exec(['journalctl', '-u', UNIT, '--no-pager', '-o', 'cat']), 'journalctl');
    assert.match(journal, /EKM listening on/, 'the journal holds the service output');
    assertNoNodeWarning(journal, `the journal of ${UNIT}`);
  });

  step('systemctl stop ends the service cleanly (SIGTERM, exit 0, no restart)', async () => {
    assert.equal(await unitProperty('NRestarts'), '0');
    await container.sh(`systemctl stop ${UNIT}`);
    assert.equal(await unitProperty('ActiveState'), 'inactive');
    assert.equal(await unitProperty('Result'), 'success');
    assert.equal(await unitProperty('ExecMainCode'), '1', 'exited (CLD_EXITED), not killed');
    assert.equal(await unitProperty('ExecMainStatus'), '0');
  });

  step('upgrading to a higher version keeps the configuration and the keys, and restarts the running service', async () => {
    await container.sh(`systemctl start ${UNIT}`);
    await waitForHttp('/health');
    const pidBefore = await unitProperty('MainPID');
    const configBefore = readFileSync(container.path(CONFIG), 'utf8');
    const environmentBefore = readFileSync(container.path(ENVIRONMENT), 'utf8');
    writeFileSync(container.path('/root/ekm.deb'), readFileSync(await upgradeDeb));
    ok(
      await container.exec(['sh', '-c', 'cd /root && apt-get install -y ./ekm.deb'], { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 120_000 }),
      'apt-get install ./ekm.deb (upgrade)',
    );
    assert.equal((await container.sh("dpkg-query -W -f '${Version}' flowcrypt-ekm")).trim(), upgradeVersion);
    assert.equal(readFileSync(container.path(CONFIG), 'utf8'), configBefore);
    assert.equal(readFileSync(container.path(ENVIRONMENT), 'utf8'), environmentBefore, 'the modified conffile is kept');
    assert.equal((await container.sh(`stat -c '%U:%G %a' ${CONFIG}`)).trim(), 'root:flowcrypt-ekm 640');
    await waitForHttp('/health');
    assert.notEqual(await unitProperty('MainPID'), pidBefore, 'restarted on the new version');
    await assertKeyServed();
    assert.equal(await unitProperty('NRestarts'), '0');
  });

  step('remove stops the service and keeps the configuration and the data', async () => {
    ok(await container.exec(['apt-get', 'remove', '-y', 'flowcrypt-ekm'], { env: { DEBIAN_FRONTEND: 'noninteractive' } }), 'apt-get remove');
    assert.equal((await container.exec(['systemctl', 'is-active', UNIT])).stdout.trim(), 'inactive');
    assert.ok(!existsSync(container.path('/usr/lib/flowcrypt-ekm/bin/node')));
    assert.ok(existsSync(container.path(CONFIG)));
    assert.ok(statSync(container.path(DATA)).isDirectory());
    assert.notEqual((await container.sh(`find ${DATA} -type f`)).trim(), '');
  });

  step('purge deletes the configuration, the data and the user', async () => {
    ok(await container.exec(['apt-get', 'purge', '-y', 'flowcrypt-ekm'], { env: { DEBIAN_FRONTEND: 'noninteractive' } }), 'apt-get purge');
    assert.ok(!existsSync(container.path(CONFIG)));
    assert.ok(!existsSync(container.path(ENVIRONMENT)));
    assert.ok(!existsSync(container.path(DATA)));
    assert.equal((await container.exec(['getent', 'passwd', 'flowcrypt-ekm'])).code, 2);
    assert.equal((await container.exec(['getent', 'group', 'flowcrypt-ekm'])).code, 2);
    // What the operator added (here the IdP's CA) stays, and with it the folder.
    assert.ok(existsSync(container.path('/etc/flowcrypt-ekm/test-idp-ca.pem')));
    assert.equal((await container.exec(['dpkg-query', '-W', 'flowcrypt-ekm'])).code, 1);
  });

  step(`systemd-analyze security scores the unit at most ${MAX_EXPOSURE}`, async () => {
    const result = await run('systemd-analyze', ['security', '--offline=true', join(REPO, 'systemd', UNIT)]);
    const exposure = /Overall exposure level for \S+: ([\d.]+)/.exec(result.stdout)?.[1];
    assert.ok(exposure !== undefined, `no exposure level in:\n${result.stdout}${result.stderr}`);
    process.stdout.write(`# systemd-analyze security: ${exposure}\n`);
    assert.ok(Number(exposure) <= MAX_EXPOSURE, `exposure ${exposure} > ${MAX_EXPOSURE}`);
  });

  step('lintian reports no error and no warning', async () => {
    const result = await lintian;
    assert.equal(result.code, 0, `lintian:\n${result.stdout}${result.stderr}`);
    assert.equal(result.stdout.trim(), '', `lintian printed:\n${result.stdout}`);
  });
});
