import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { parseConfig } from '../../src/config/load-config.js';
import { openStore } from '../../src/stores/store-registry.js';
import type { StoredKey } from '../../src/stores/store.js';
import { EkmDaemon, runEkm } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { STORE_BACKENDS } from '../support/store-backends.js';
import { TestPki } from '../../testbed/test-pki.js';

const AUDIENCE = 'ekm-lifecycle-test';
const DAY_MS = 86_400_000;

/** A seeded key and what --list must say of it. */
interface Seeded {
  readonly key: StoredKey;
  readonly algorithm: string;
  readonly bits: number | null;
  readonly curve: string | null;
  readonly created: string;
  readonly expires: string | null;
}

async function seeded(
  email: string,
  options: Parameters<typeof makePrivateKey>[1],
  expected: { algorithm: string; bits: number | null; curve: string | null; expiresInDays?: number },
): Promise<Seeded> {
  const made = await makePrivateKey(email, options);
  const created = (await openpgp.readKey({ armoredKey: made.publicKey })).getCreationTime();
  const days = options?.expired === true ? 1 : expected.expiresInDays;
  return {
    // Straight into the store: an expired key is what a store holds after its owner's key lapsed.
    key: { email, fingerprint: made.fingerprint, privateKey: made.armored, publicKey: made.publicKey },
    algorithm: expected.algorithm,
    bits: expected.bits,
    curve: expected.curve,
    created: created.toISOString(),
    expires: days === undefined ? null : new Date(created.getTime() + days * DAY_MS).toISOString(),
  };
}

/** Audit entries among a command's JSON log lines on stderr. */
function auditEntries(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.audit !== undefined);
}

for (const backend of STORE_BACKENDS) {
  describe(`--list and --delete on ${backend.name}, observed through the running daemon`, () => {
    let root: string;
    let pki: TestPki;
    let idp: OpenIdProvider;
    let ekm: EkmDaemon;
    let cleanup: (() => Promise<void>) | undefined;
    let config: string;
    let keys: Seeded[];
    let seededFrom: number;
    let seededTo: number;
    const ekmArgs = (...args: string[]) => runEkm([`--config=${config}`, ...args]);
    const privateKeys = async (email: string) => {
      const token = await idp.mint({ email, email_verified: true });
      const answer = await request(`${ekm.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(answer.status, 200, answer.text);
      return (answer.json.privateKeys as { decryptedPrivateKey: string }[]).map((k) => k.decryptedPrivateKey);
    };
    const publicKeys = async (email: string) => {
      const answer = await request(`${ekm.baseUrl}/v1/keys/public/${email}`);
      assert.equal(answer.status, 200, answer.text);
      return answer.json.publicKeys as unknown[];
    };
    /** Enough requests that both workers answer, each from whatever it keeps. */
    const everyWorker = async <T>(ask: () => Promise<T>): Promise<T[]> => Promise.all(Array.from({ length: 8 }, ask));

    before(async () => {
      root = mkdtempSync(join(tmpdir(), 'ekm-lifecycle-'));
      pki = new TestPki();
      const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
      idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
      const backendSetup = await backend.setup(root);
      cleanup = backendSetup.cleanup;
      const ed = { algorithm: 'ed25519', bits: null, curve: null };
      keys = [
        await seeded('alice@a.test', {}, ed),
        await seeded(
          'alice@a.test',
          { type: 'rsa', rsaBits: 2048, expiresInDays: 10 },
          { algorithm: 'rsaEncryptSign', bits: 2048, curve: null, expiresInDays: 10 },
        ),
        await seeded('bob@a.test', { expired: true }, ed),
        await seeded('carol@b.test', { expiresInDays: 90 }, { ...ed, expiresInDays: 90 }),
        await seeded('dave@a.test', {}, ed),
      ];
      ekm = await EkmDaemon.start({
        dir: root,
        env: { NODE_EXTRA_CA_CERTS: pki.caCertFile },
        properties: {
          'org.id': 'lifecycle.test',
          'org.domains': 'a.test,b.test',
          'api.workers': '2',
          'api.https.enabled': 'false',
          ...backendSetup.properties,
          'auth.type': 'OpenIDConnectAuthenticator',
          'auth.openid.issuer': idp.issuer,
          'auth.openid.jwks': idp.jwksUri,
          'auth.openid.audience': AUDIENCE,
          'acl.type': 'SimpleAcl',
        },
      });
      config = ekm.configFile;
      // Seeded through the store while the daemon runs: its workers must see writes of other processes too.
      const parsed = parseConfig(readFileSync(config, 'utf8'), config);
      const store = await openStore(parsed.store, { logger: new MemoryLogger(), setup: true });
      try {
        seededFrom = Date.now();
        for (const k of keys) await store.upsert(k.key);
        seededTo = Date.now();
      } finally {
        await store.close();
      }
    });

    after(async () => {
      await ekm?.stop('SIGKILL');
      await idp?.close();
      await cleanup?.();
      pki?.remove();
      rmSync(root, { recursive: true, force: true });
    });

    it('--list --format=json: every key field by field, a summary, nothing but JSON on stdout and no key material', async () => {
      const listed = await ekmArgs('--list', '--format=json');
      assert.equal(listed.code, 0, listed.output);
      const doc = JSON.parse(listed.stdout) as { keys: Record<string, unknown>[]; summary: Record<string, number> };
      assert.deepEqual(doc.summary, { keys: 5, users: 4, expiringWithin30Days: 1, expired: 1 });
      const expected = [...keys].sort(
        (a, b) => a.key.email.localeCompare(b.key.email) || a.created.localeCompare(b.created) || a.key.fingerprint.localeCompare(b.key.fingerprint),
      );
      assert.deepEqual(
        doc.keys.map(({ lastWritten: _, ...rest }) => rest),
        expected.map((k) => ({
          email: k.key.email,
          fingerprint: k.key.fingerprint,
          algorithm: k.algorithm,
          bits: k.bits,
          curve: k.curve,
          created: k.created,
          expires: k.expires,
          revoked: false,
        })),
      );
      for (const k of doc.keys) {
        const written = Date.parse(String(k.lastWritten));
        assert.ok(
          written >= seededFrom && written <= seededTo,
          `${String(k.lastWritten)} outside the seeding [${new Date(seededFrom).toISOString()}, ${new Date(seededTo).toISOString()}]`,
        );
      }
      for (const k of keys) assert.equal(listed.output.includes(k.key.privateKey.slice(100, 160)), false, 'no private key material');
      assert.doesNotMatch(listed.output, /PRIVATE KEY|PUBLIC KEY/);
    });

    it('--list: a table with a header, a line per key and the summary line', async () => {
      const listed = await ekmArgs('--list');
      assert.equal(listed.code, 0, listed.output);
      const lines = listed.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^EMAIL\s+FINGERPRINT\s+ALGORITHM\s+CREATED\s+EXPIRES\s+LAST WRITTEN$/);
      assert.equal(lines.length, 7);
      const rsa = keys[1]!;
      assert.match(
        lines.find((l) => l.includes(rsa.key.fingerprint))!,
        new RegExp(
          `^alice@a\\.test\\s+${rsa.key.fingerprint}\\s+rsaEncryptSign 2048\\s+${rsa.created.slice(0, 10)} ${rsa.created.slice(11, 16)}\\s+${rsa.expires!.slice(0, 10)} `,
        ),
      );
      assert.match(
        lines.find((l) => l.includes(keys[0]!.key.fingerprint))!,
        /ed25519\s+\S+ \S+\s+never\s+\d{4}-\d\d-\d\d \d\d:\d\d$/,
      );
      assert.equal(lines[6], '5 keys, 4 users, 1 expiring within 30 days, 1 expired');
    });

    it("--delete=<email> removes only that user's keys, audited; the running daemon stops serving them at once on every worker", async () => {
      assert.deepEqual(
        (await everyWorker(() => privateKeys('alice@a.test'))).map((k) => k.length),
        Array(8).fill(2),
      );
      assert.deepEqual(
        (await everyWorker(() => publicKeys('alice@a.test'))).map((k) => k.length),
        Array(8).fill(2),
      );

      const unconfirmed = await ekmArgs('--delete=alice@a.test');
      assert.equal(unconfirmed.code, 1, unconfirmed.output);
      assert.match(unconfirmed.stderr, /nothing removed: stdin is not a terminal to confirm on; add --yes/);
      assert.equal((await privateKeys('alice@a.test')).length, 2, 'nothing removed without confirmation');

      // As the packaged command passes it on after switching from root to the service user.
      const deleted = await runEkm([`--config=${config}`, '--delete=Alice@A.test', '--yes'], { env: { FLOWCRYPT_EKM_INVOKED_BY: 'admin-alice' } });
      assert.equal(deleted.code, 0, deleted.output);
      for (const k of keys.slice(0, 2)) assert.match(deleted.stdout, new RegExp(`^removed: alice@a\\.test ${k.key.fingerprint}$`, 'm'));
      assert.match(deleted.stdout, new RegExp(`^Removed 2 keys of 1 user from ${backend.name}$`, 'm'));
      const audited = auditEntries(deleted.stderr);
      assert.deepEqual(
        audited.map((e) => [e.audit, e.email, e.fingerprints, e.status, e.outcome, e.operator, e.host, e.invokedBy]),
        keys
          .slice(0, 2)
          .map((k) => ['private-key.delete', 'alice@a.test', [k.key.fingerprint], 200, 'success', userInfo().username, hostname(), 'admin-alice']),
      );

      assert.deepEqual(await everyWorker(() => privateKeys('alice@a.test')), Array(8).fill([]));
      assert.deepEqual(await everyWorker(() => publicKeys('alice@a.test')), Array(8).fill([]));
      assert.deepEqual(
        (await everyWorker(() => privateKeys('dave@a.test'))).map((k) => k.length),
        Array(8).fill(1),
        'other users unaffected',
      );
      assert.equal((await privateKeys('carol@b.test')).length, 1);
    });

    it('--delete=<fingerprint> removes that one key; a file of emails removes theirs and names those without keys', async () => {
      const carol = keys[3]!;
      assert.equal((await privateKeys('carol@b.test')).length, 1);
      const one = await ekmArgs(`--delete=${carol.key.fingerprint.toLowerCase()}`, '--yes');
      assert.equal(one.code, 0, one.output);
      assert.match(one.stdout, new RegExp(`^removed: carol@b\\.test ${carol.key.fingerprint}$`, 'm'));
      assert.deepEqual(await everyWorker(() => privateKeys('carol@b.test')), Array(8).fill([]));

      const file = join(root, 'departed.txt');
      writeFileSync(file, '# leavers, December\nbob@a.test\n\nnobody@a.test\n');
      const many = await ekmArgs(`--delete=${file}`, '--yes');
      assert.equal(many.code, 0, many.output);
      assert.match(many.stdout, new RegExp(`^removed: bob@a\\.test ${keys[2]!.key.fingerprint}$`, 'm'));
      assert.match(many.stderr, /^no key stored for nobody@a\.test$/m);
      assert.deepEqual(await everyWorker(() => privateKeys('bob@a.test')), Array(8).fill([]));
      assert.equal((await privateKeys('dave@a.test')).length, 1, 'other users unaffected');

      const summary = JSON.parse((await ekmArgs('--list', '--format=json')).stdout).summary;
      assert.deepEqual(summary, { keys: 1, users: 1, expiringWithin30Days: 0, expired: 0 });
    });

    it('exits 1 with one line when there is nothing to remove or the value is not understood; removes nothing', async () => {
      const gone = await ekmArgs('--delete=alice@a.test', '--yes');
      assert.equal(gone.code, 1);
      assert.equal(
        gone.stderr
          .split('\n')
          .filter((l) => l.startsWith('flowcrypt-ekm:'))
          .join('\n'),
        'flowcrypt-ekm: nothing to remove: no key is stored for alice@a.test',
      );
      const unknown = await ekmArgs(`--delete=${'AB'.repeat(20)}`, '--yes');
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /nothing to remove: no key with the fingerprint (AB){20} is stored/);
      const bad = join(root, 'bad.txt');
      writeFileSync(bad, 'dave@a.test\n\u212Aate@a.test\n');
      const refused = await ekmArgs(`--delete=${bad}`, '--yes');
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /bad\.txt line 2: not an email this key manager accepts: it contains the character U\+212A/);
      assert.equal((await privateKeys('dave@a.test')).length, 1, 'a file with one bad line removes nothing');
    });
  });
}
