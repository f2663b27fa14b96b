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
import { ConnectProxy } from '../support/connect-proxy.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';

describe('JWKS discovered from the issuer (auth.openid.jwks unset) through HTTPS_PROXY; admin-provisioned mode', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  let ekm: EkmDaemon;
  let proxy: ConnectProxy;

  before(async () => {
    pki = new TestPki();
    const cert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: cert.keyPem, cert: cert.certPem }, audience: 'discovery-client' });
    proxy = await ConnectProxy.start();
    ekm = await EkmDaemon.start({
      env: { NODE_EXTRA_CA_CERTS: pki.caCertFile, HTTPS_PROXY: proxy.url, https_proxy: undefined, NO_PROXY: undefined, no_proxy: undefined },
      properties: {
        ...baseProperties({ orgId: 'discovery.org', audience: 'discovery-client' }),
        'auth.openid.issuer': idp.issuer,
        ...encryptedDbProperties(mkdtempSync(join(tmpdir(), 'ekm-discovery-')), 'discovery passphrase'),
        'api.workers': '1',
        'api.keys.provisioning': 'admin',
      },
    });
  });
  after(async () => {
    await ekm?.stop();
    await idp?.close();
    await proxy?.close();
    pki?.remove();
  });

  it('answers 503 while discovery fails, then verifies tokens once the issuer is back', async () => {
    const token = await idp.mint({ email: 'dora@example.com', email_verified: true });
    const get = () => request(`${ekm.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${token}` } });
    idp.available = false;
    const down = await get();
    assert.equal(down.status, 503, down.text);
    assert.deepEqual(Object.keys(down.json).sort(), ['code', 'details', 'message']);
    assert.equal(down.json.code, 503);
    idp.available = true;
    const up = await get();
    assert.equal(up.status, 200, up.text);
    assert.deepEqual(up.json, { privateKeys: [] });
    assert.equal(idp.jwksRequests, 1);
    assert.match(ekm.output, /Discovered the JWKS URL from the issuer metadata/);
    const idpHostPort = new URL(idp.issuer).host;
    assert.ok(proxy.tunnels.length >= 2 && proxy.tunnels.every((t) => t === idpHostPort), `tunnels: ${proxy.tunnels.join(' ')}`);
  });

  it('refuses client key uploads with 405 and the administrator message', async () => {
    const token = await idp.mint({ email: 'Dora@Example.com', email_verified: true });
    const key = await makePrivateKey('dora@example.com');
    const put = await request(`${ekm.baseUrl}/v1/keys/private`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ privateKey: key.armored }),
    });
    assert.equal(put.status, 405);
    assert.equal(put.headers.allow, 'HEAD, GET');
    assert.deepEqual(put.json, {
      code: 405,
      message: 'No key has been generated for dora@example.com yet. Please ask your administrator.',
      details: 'Keys are provisioned by an administrator',
    });
    const get = await request(`${ekm.baseUrl}/v1/keys/private`, { headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual(get.json, { privateKeys: [] });
  });
});
