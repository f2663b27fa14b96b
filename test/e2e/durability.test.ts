import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { EkmDaemon } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { makePrivateKey } from '../support/openpgp-keys.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

const USERS = 160;
const CLIENTS = 8;

describe('durability: kill -9 of the whole service while clients PUT', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  const dataDir = mkdtempSync(join(tmpdir(), 'ekm-durability-'));
  let properties: Record<string, string>;

  before(async () => {
    pki = new TestPki();
    const cert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: cert.keyPem, cert: cert.certPem }, audience: 'durability' });
    properties = {
      ...baseProperties({ orgId: 'durability.org', idp, audience: 'durability' }),
      ...encryptedDbProperties(dataDir, 'durability passphrase'),
      'api.workers': '2',
      'logger.default.level': 'warn',
    };
  });
  after(async () => {
    await idp?.close();
    pki?.remove();
  });

  it('loses no write that was answered 200', async () => {
    const users = await Promise.all(
      Array.from({ length: USERS }, async (_, i) => {
        const email = `user${i}@durability.example`;
        return { email, key: await makePrivateKey(email), token: await idp.mint({ email, email_verified: true }) };
      }),
    );
    const env = { NODE_EXTRA_CA_CERTS: pki.caCertFile };
    const ekm = await EkmDaemon.start({ properties, env });
    const acknowledged = new Set<string>();
    // Every PUT is accounted for: a refusal or a request error before the kill is a fault of the
    // setup (the test would otherwise pass with nothing written); after it, a lost request is expected.
    const refused: string[] = [];
    const failedBeforeKill: string[] = [];
    let failedAfterKill = 0;
    let next = 0;
    let killed = false;
    const client = async () => {
      while (next < USERS && !killed) {
        const user = users[next++]!;
        try {
          const answer = await request(`${ekm.baseUrl}/v1/keys/private`, {
            method: 'PUT',
            headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ privateKey: user.key.armored }),
            timeoutMs: 5000,
          });
          if (answer.status === 200) acknowledged.add(user.email);
          else refused.push(`${user.email}: ${answer.status} ${answer.text}`);
        } catch (e) {
          // The service died under this request: not acknowledged, so it may or may not be stored.
          if (killed) failedAfterKill++;
          else failedBeforeKill.push(`${user.email}: ${(e as Error).message}`);
        }
      }
    };
    const clients = Array.from({ length: CLIENTS }, client);
    // Kill everything at once, mid-stream, once a good number of writes were acknowledged.
    // Bounded: if the PUTs are refused (a setup fault), the clients run out of users and this ends.
    while (acknowledged.size < USERS / 3 && next < USERS) await new Promise((r) => setTimeout(r, 5));
    const pids = [ekm.process.pid!, ...ekm.workerPids()];
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    killed = true;
    await Promise.all(clients);
    await ekm.stop();
    const ackedAtKill = acknowledged.size;
    const tally = `${ackedAtKill} answered 200, ${refused.length} refused, ${failedBeforeKill.length} failed before and ${failedAfterKill} after the kill`;
    assert.deepEqual(refused, [], tally);
    assert.deepEqual(failedBeforeKill, [], tally);
    assert.ok(ackedAtKill >= USERS / 3, `too few writes acknowledged before the kill to test anything: ${tally}`);
    assert.ok(ackedAtKill < USERS, `the kill came too late to test anything: ${tally}`);
    assert.ok(failedAfterKill <= CLIENTS, `more requests lost than were in flight at the kill: ${tally}`);

    const again = await EkmDaemon.start({ properties, env });
    try {
      let found = 0;
      for (const user of users.filter((u) => acknowledged.has(u.email))) {
        const answer = await request(`${again.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${user.token}` } });
        assert.equal(answer.status, 200, answer.text);
        const fingerprints = await Promise.all(
          answer.json.privateKeys.map(async (k: { decryptedPrivateKey: string }) => (await import('openpgp')).readPrivateKey({ armoredKey: k.decryptedPrivateKey }).then((p) => p.getFingerprint().toUpperCase())),
        );
        if (fingerprints.includes(user.key.fingerprint)) found++;
      }
      console.log(`durability: ${USERS} PUTs, kill -9 of ${pids.length} processes: ${tally}; ${found} of the ${ackedAtKill} found after restart`);
      assert.equal(found, ackedAtKill);
    } finally {
      await again.stop();
    }
  });
});
