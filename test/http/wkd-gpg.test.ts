import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { validatePrivateKey } from '../../src/keys/private-key-policy.js';
import { wkdHash } from '../../src/keys/wkd-hash.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import { EkmDaemon } from '../../testbed/ekm-daemon.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

/**
 * GnuPG as a real WKD client against the real daemon. GnuPG fetches
 * `https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/...` (advanced method) when that
 * host resolves, else `https://<domain>/.well-known/openpgpkey/hu/...` (direct method), always on
 * port 443, verifying the certificate against the system CA bundle only (GnuPG 2.2.40: with
 * dirmngr's `hkp-cacert` set to the test CA, WKD still fails "the certificate issuer is unknown";
 * that option is for keyservers). So the test
 * - serves the EKM on 127.0.0.1:443 (as root) with a certificate from a throwaway CA,
 * - makes the test domains resolve to 127.0.0.1 and the CA trusted, for gpg's dirmngr only: in a
 *   private mount namespace (`unshare --mount`) where a copy of /etc/hosts and of
 *   /etc/ssl/certs/ca-certificates.crt with the test's additions are bind-mounted over the real
 *   ones, so nothing on the machine changes. Where namespaces are not allowed (an unprivileged
 *   container), it appends to both files and restores them byte for byte at the end.
 * - uses a private GNUPGHOME with `standard-resolver` (getaddrinfo reads /etc/hosts).
 * The domains are under .test (RFC 6761), which no real resolver answers. For the direct method
 * dirmngr must see `openpgpkey.<domain>` fail to resolve and the `_openpgpkey._tcp` SRV lookup come
 * back empty, which a working DNS resolver (NXDOMAIN) gives.
 */
const ADVANCED = 'wkd-advanced.ekm.test';
const DIRECT = 'wkd-direct.ekm.test';
const HOSTS_LINE = `127.0.0.1 openpgpkey.${ADVANCED} ${ADVANCED} ${DIRECT}\n`;
const SYSTEM_HOSTS = '/etc/hosts';
const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const GPG_WKS_CLIENT = '/usr/lib/gnupg/gpg-wks-client';
const KEYSTORE_PASSWORD = 'wkd gpg test keystore';

/**
 * A key GnuPG 2.2 reads: EdDSA/ECDH on Curve25519 in the legacy encoding, as the FlowCrypt apps make
 * them. (The RFC 9580 Ed25519 algorithm of OpenPGP.js's `curve25519` type is unknown to GnuPG 2.2,
 * which then drops the user ids and skips the key: "new key but contains no user ID".)
 */
async function legacyCurve25519Key(emails: string[]): Promise<string> {
  const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: emails.map((email) => ({ name: 'WKD Test', email })), format: 'armored' });
  return privateKey;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking the event loop (the daemon's output keeps being read). */
function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { env, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      resolve({ status: error === null ? 0 : typeof code === 'number' ? code : null, stdout, stderr });
    });
  });
}

function port443Free(): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(443, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Whether this process may make a private mount namespace with bind mounts. */
function canUnshareMounts(): boolean {
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${SYSTEM_HOSTS} ${SYSTEM_HOSTS}`], { stdio: 'ignore' });
  return probe.status === 0;
}

describe('Web Key Directory with GnuPG as the client', { timeout: 180_000 }, () => {
  let dir: string;
  let pki: TestPki;
  let ekm: EkmDaemon | undefined;
  let gnupgHome: string;
  let restoreSystemFiles: (() => void) | undefined;
  /** The system files as they were before the test, to check they are so after it. */
  let systemFiles: { hosts: string; bundle: string } | undefined;
  let gpg: (args: string[]) => Promise<Run>;
  let connect: (args: string[]) => Promise<Run>;
  const fingerprints: Record<string, string[]> = {};

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'this test binds port 443 and needs root');
    assert.ok(await port443Free(), '127.0.0.1:443 is taken; this test needs it (GnuPG fetches WKD from port 443 only)');
    dir = mkdtempSync(join(tmpdir(), 'ekm-wkd-gpg-'));
    pki = new TestPki('EKM WKD Test CA');
    const cert = pki.issue('wkd-server', { hosts: [`openpgpkey.${ADVANCED}`, ADVANCED, DIRECT, '127.0.0.1'] });

    // Seed the store before the daemon starts: two keys for alice, one for bob, none for carol.
    const dataDir = join(dir, 'data');
    const store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder: dataDir, encryptionKey: 'wkd gpg test database' }, { logger: new MemoryLogger() });
    try {
      for (const [email, extraUid] of [[`alice@${ADVANCED}`, 'alice@private.example'], [`alice@${ADVANCED}`, undefined], [`bob@${DIRECT}`, undefined]] as const) {
        const key = await validatePrivateKey(await legacyCurve25519Key(extraUid === undefined ? [email] : [email, extraUid]), email);
        await store.upsert(key);
        (fingerprints[email] ??= []).push(key.fingerprint);
      }
    } finally {
      await store.close();
    }

    ekm = await EkmDaemon.start({
      dir,
      scheme: 'https',
      ca: pki.caCertPem,
      properties: {
        ...baseProperties({ orgId: 'wkd-gpg.test', idp: { issuer: 'https://issuer.invalid', jwksUri: 'https://issuer.invalid/jwks' }, audience: 'wkd-gpg-test' }),
        ...encryptedDbProperties(dataDir, 'wkd gpg test database'),
        'org.domains': `${ADVANCED},${DIRECT}`,
        'api.hostname': '127.0.0.1',
        'api.port': '443',
        'api.workers': '1',
        'api.https.enabled': 'true',
        'api.https.key.file': pki.pkcs12(cert, KEYSTORE_PASSWORD, 'openssl'),
        'api.https.key.password': KEYSTORE_PASSWORD,
        'api.cors.origins': 'chrome-extension://only-this-one',
      },
    });

    gnupgHome = join(dir, 'gnupg');
    mkdirSync(gnupgHome, { mode: 0o700 });
    writeFileSync(join(gnupgHome, 'dirmngr.conf'), `standard-resolver\nlog-file ${join(dir, 'dirmngr.log')}\ndebug-level basic\n`);
    const hosts = readFileSync(SYSTEM_HOSTS, 'utf8');
    const bundle = readFileSync(SYSTEM_CA_BUNDLE, 'utf8');
    systemFiles = { hosts, bundle };
    const withTestHosts = `${hosts.endsWith('\n') || hosts === '' ? hosts : `${hosts}\n`}${HOSTS_LINE}`;
    const withTestCa = `${bundle.endsWith('\n') ? bundle : `${bundle}\n`}${pki.caCertPem}`;
    const env = { ...process.env, GNUPGHOME: gnupgHome, LC_ALL: 'C' };
    if (canUnshareMounts()) {
      const hostsCopy = join(dir, 'hosts');
      const bundleCopy = join(dir, 'ca-certificates.crt');
      writeFileSync(hostsCopy, withTestHosts);
      writeFileSync(bundleCopy, withTestCa);
      const script = `mount --bind "$1" ${SYSTEM_HOSTS} && mount --bind "$2" ${SYSTEM_CA_BUNDLE} && shift 2 && exec "$@"`;
      const inNamespace = (command: string) => (args: string[]) =>
        run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', hostsCopy, bundleCopy, command, ...args], env);
      gpg = inNamespace('gpg');
      connect = (args) => inNamespace('gpg-connect-agent')(['--dirmngr', ...args]);
    } else {
      const restore = () => {
        writeFileSync(SYSTEM_HOSTS, hosts);
        writeFileSync(SYSTEM_CA_BUNDLE, bundle);
        process.off('exit', restore);
      };
      process.on('exit', restore);
      restoreSystemFiles = restore;
      writeFileSync(SYSTEM_HOSTS, withTestHosts);
      writeFileSync(SYSTEM_CA_BUNDLE, withTestCa);
      gpg = (args) => run('gpg', args, env);
      connect = (args) => run('gpg-connect-agent', ['--dirmngr', ...args], env);
    }
  });

  after(async () => {
    // dirmngr and gpg-agent of this GNUPGHOME only, by their sockets.
    if (gnupgHome !== undefined) spawnSync('gpgconf', ['--kill', 'all'], { env: { ...process.env, GNUPGHOME: gnupgHome }, stdio: 'ignore' });
    restoreSystemFiles?.();
    // Stop and remove first: a failed check below must not leave the daemon on :443 running.
    await ekm?.stop();
    pki?.remove();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    if (systemFiles !== undefined) {
      assert.equal(readFileSync(SYSTEM_HOSTS, 'utf8'), systemFiles.hosts, `${SYSTEM_HOSTS} was not restored`);
      assert.equal(readFileSync(SYSTEM_CA_BUNDLE, 'utf8'), systemFiles.bundle, `${SYSTEM_CA_BUNDLE} was not restored`);
    }
  });

  const locate = (email: string) => gpg(['--batch', '--no-tty', '--auto-key-locate', 'clear,wkd', '--locate-keys', email]);
  const keyring = async (email: string) => {
    const r = await gpg(['--batch', '--no-tty', '--with-colons', '--list-keys', email]);
    const fprs: string[] = [];
    const uids: string[] = [];
    let inPrimary = false;
    for (const line of r.stdout.split('\n')) {
      const f = line.split(':');
      if (f[0] === 'pub') inPrimary = true;
      else if (f[0] === 'sub') inPrimary = false;
      else if (f[0] === 'fpr' && inPrimary) fprs.push(f[9]!);
      else if (f[0] === 'uid') uids.push(f[9]!);
    }
    return { fprs: fprs.sort(), uids, raw: `${r.stdout}\n${r.stderr}` };
  };
  const diagnostics = () => {
    let log = '';
    try {
      log = readFileSync(join(dir, 'dirmngr.log'), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      // no log yet
    }
    return `dirmngr log:\n${log}\nEKM output:\n${ekm?.output ?? ''}`;
  };

  it('hashes as GnuPG does', () => {
    const input = `alice@${ADVANCED}\nbob@${DIRECT}\n`;
    const out = execFileSync(GPG_WKS_CLIENT, ['--print-wkd-hash'], { input, encoding: 'utf8' }).trim().split('\n');
    assert.deepEqual(out.map((l) => l.split(' ')[0]), [wkdHash('alice'), wkdHash('bob')]);
  });

  /** The EKM's access log lines for this path (the daemon's output is read while gpg runs). */
  const served = async (path: string) => {
    await new Promise((r) => setTimeout(r, 200));
    return (ekm?.output ?? '').split('\n').filter((l) => l.includes(`"path":"${path}"`)).map((l) => (JSON.parse(l) as { status: number }).status);
  };

  it('gpg --locate-keys finds every key of a user by the advanced method, with only their address', async () => {
    const r = await locate(`alice@${ADVANCED}`);
    assert.equal(r.status, 0, `${r.stderr}\n${diagnostics()}`);
    const found = await keyring(`alice@${ADVANCED}`);
    assert.deepEqual(found.fprs, [...fingerprints[`alice@${ADVANCED}`]!].sort(), `${r.stderr}\n${found.raw}`);
    assert.ok(found.uids.length >= 2 && found.uids.every((u) => u === `WKD Test <alice@${ADVANCED}>`), found.uids.join(', '));
    assert.deepEqual(await served(`/.well-known/openpgpkey/${ADVANCED}/hu/${wkdHash('alice')}`), [200], diagnostics());
  });

  it('gpg --locate-keys finds a key by the direct method when the domain has no openpgpkey host', async () => {
    const r = await locate(`bob@${DIRECT}`);
    assert.equal(r.status, 0, `${r.stderr}\n${diagnostics()}`);
    assert.deepEqual((await keyring(`bob@${DIRECT}`)).fprs, fingerprints[`bob@${DIRECT}`], diagnostics());
    assert.deepEqual(await served(`/.well-known/openpgpkey/hu/${wkdHash('bob')}`), [200], diagnostics());
  });

  it('gpg --locate-keys fails for a user without keys, after the EKM answered 404', async () => {
    const r = await locate(`carol@${ADVANCED}`);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /error retrieving 'carol@wkd-advanced\.ekm\.test' via WKD: No data/, r.stderr);
    assert.deepEqual(await served(`/.well-known/openpgpkey/${ADVANCED}/hu/${wkdHash('carol')}`), [404], diagnostics());
    assert.deepEqual((await keyring(`carol@${ADVANCED}`)).fprs, []);
  });

  it("dirmngr reads the domain's policy file", async () => {
    // What gpg-wks-client asks dirmngr first; `--supported` itself also wants a submission
    // service (a Web Key Service), which the EKM does not offer.
    const r = await connect([`WKD_GET --policy-flags -- anyone@${ADVANCED}`, '/bye']);
    assert.match(r.stdout, /^OK$/m, `${r.stdout}\n${r.stderr}\n${diagnostics()}`);
    assert.doesNotMatch(r.stdout, /^ERR/m);
    // dirmngr also fetches it by itself after a miss (check_wkd_support), so count is not fixed.
    const statuses = await served(`/.well-known/openpgpkey/${ADVANCED}/policy`);
    assert.ok(statuses.length >= 1 && statuses.every((s) => s === 200), `${statuses.join(',')}\n${diagnostics()}`);
  });

});
