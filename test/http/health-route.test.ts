import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { OpenIdConnectAuthenticator } from '../../src/auth/openid-connect-authenticator.js';
import type { OutboundFetch } from '../../src/auth/outbound-fetch.js';
import { DrainState } from '../../src/http/drain-state.js';
import { registry } from '../../src/metrics/ekm-metrics.js';
import { measuredAuthenticator } from '../../src/metrics/measured-authenticator.js';
import { startInProcessApp, type InProcessApp } from '../support/in-process-app.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { TestPki } from '../../testbed/test-pki.js';

/** The value of ekm_idp_up in this process's registry (collected as a scrape does). */
async function idpUpMetric(): Promise<number | undefined> {
  const metric = await registry.getSingleMetric('ekm_idp_up')?.get();
  return metric?.values[0]?.value;
}

describe('/health: the identity provider as its own field, and a stopping node', () => {
  let pki: TestPki;
  let idp: OpenIdProvider;
  let app: InProcessApp;
  const drain = new DrainState();

  before(async () => {
    pki = new TestPki();
    const cert = pki.issue('idp', { hosts: ['127.0.0.1'] });
    idp = await OpenIdProvider.start({ tls: { key: cert.keyPem, cert: cert.certPem }, audience: 'health-test' });
    const dispatcher = new Agent({ connect: { ca: pki.caCertPem } });
    const fetch = ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as OutboundFetch;
    const authenticator = measuredAuthenticator(new OpenIdConnectAuthenticator({ issuer: idp.issuer, jwks: idp.jwksUri, audience: ['health-test'] }, fetch, new MemoryLogger()));
    app = await startInProcessApp({ authenticator, drain });
  });

  after(async () => {
    await app?.close();
    await idp?.close();
    pki?.remove();
  });

  it('reports idpStatus up while the JWKS can be fetched, and ekm_idp_up 1', async () => {
    const health = await fetch(`${app.base}/health`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as Record<string, unknown>;
    assert.equal(body.storeStatus, 'up');
    assert.equal(body.idpStatus, 'up');
    assert.equal(await idpUpMetric(), 1);
  });

  it('reports idpStatus down (status code still 200: the store is up) once the provider fails, checked again when the last check is old', async (t) => {
    idp.available = false;
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 31_000 });
    const health = await fetch(`${app.base}/health`);
    t.mock.timers.reset();
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as Record<string, unknown>).idpStatus, 'down');
    assert.equal(await idpUpMetric(), 0);
    idp.available = true;
  });

  it('answers 503 while the service stops (not while a reload replaces the worker), whatever the store says', async () => {
    drain.start(false);
    assert.equal((await fetch(`${app.base}/health`)).status, 200, 'a worker replaced by a reload keeps answering /health like the others');
    drain.start(true);
    const health = await fetch(`${app.base}/health`);
    assert.equal(health.status, 503);
    const body = (await health.json()) as Record<string, unknown>;
    assert.equal(body.code, 503);
    assert.equal(body.draining, true);
    assert.equal(typeof body.message, 'string');
    assert.equal(typeof body.details, 'string');
  });
});
