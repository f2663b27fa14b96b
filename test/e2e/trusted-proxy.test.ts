import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { EkmDaemon } from '../../testbed/ekm-daemon.js';
import { request } from '../../testbed/http-client.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

const AUDIENCE = 'ekm-proxy-e2e';

/** The daemon's JSON log entries carrying this User-Agent (the audit entry and the access line). */
async function entriesOf(ekm: EkmDaemon, userAgent: string): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const entries = ekm.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const audit = entries.find((e) => e.userAgent === userAgent);
    const access = audit && entries.find((e) => e.message === 'request' && e.requestId === audit.requestId);
    if (audit && access) return [audit, access];
    if (Date.now() > deadline) throw new Error(`No audit entry and access line for ${userAgent} in:\n${ekm.output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('end to end: the client address behind a trusted proxy, spoofing from anyone else ignored', () => {
  let dir: string;
  let pki: TestPki;
  let idp: OpenIdProvider;
  const daemons: EkmDaemon[] = [];

  const start = (trusted: string | undefined) =>
    EkmDaemon.start({
      env: { NODE_EXTRA_CA_CERTS: pki.caCertFile },
      properties: {
        ...baseProperties({ orgId: 'proxy.org', idp, audience: AUDIENCE }),
        ...encryptedDbProperties(join(dir, trusted === undefined ? 'db-untrusting' : 'db-trusting'), 'proxy e2e database passphrase'),
        'org.domains': 'example.com',
        'api.workers': '2',
        ...(trusted === undefined ? {} : { 'api.proxy.trusted': trusted }),
      },
    }).then((d) => (daemons.push(d), d));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-proxy-e2e-'));
    pki = new TestPki();
    const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: AUDIENCE });
  });

  after(async () => {
    for (const d of daemons) await d.stop('SIGKILL');
    await idp?.close();
    pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const getPrivate = async (ekm: EkmDaemon, userAgent: string, headers: Record<string, string>) => {
    const token = await idp.mint({ email: 'proxied@example.com', email_verified: true });
    const answer = await request(`${ekm.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${token}`, 'user-agent': userAgent, ...headers } });
    assert.equal(answer.status, 200, answer.text);
    return entriesOf(ekm, userAgent);
  };

  it('audits and logs the TCP peer when no proxy is trusted, whatever X-Forwarded-For says', async () => {
    const ekm = await start(undefined);
    const [audit, access] = await getPrivate(ekm, 'spoofer/1', { 'x-forwarded-for': '198.51.100.7', 'x-forwarded-proto': 'https' });
    assert.equal(audit!.clientAddress, '127.0.0.1');
    assert.equal(access!.clientAddress, '127.0.0.1');
    assert.equal(access!.protocol, 'http');
  });

  it('audits and logs the client X-Forwarded-For names when the peer is a trusted proxy', async () => {
    const ekm = await start('::1,127.0.0.0/8');
    const [audit, access] = await getPrivate(ekm, 'proxied/1', { 'x-forwarded-for': '192.0.2.66, 2001:db8::7', 'x-forwarded-proto': 'https' });
    assert.equal(audit!.clientAddress, '2001:db8::7');
    assert.equal(access!.clientAddress, '2001:db8::7');
    assert.equal(access!.protocol, 'https');
  });
});
