import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AuthenticationError, KeyIdIndexBuildingError, StoreUnavailableError } from '../../src/errors.js';
import { registry } from '../../src/metrics/ekm-metrics.js';
import { measuredAuthenticator } from '../../src/metrics/measured-authenticator.js';
import { MeasuredStore } from '../../src/metrics/measured-store.js';
import type { Store } from '../../src/stores/store.js';
import { startInProcessApp, type InProcessApp } from '../support/in-process-app.js';

const EMAIL = 'metrics.alice@example.com';
const FINGERPRINT = 'A1B2C3D4E5F60718293A4B5C6D7E8F9011223344';

/** The value of one series, as this process's registry has it now. */
async function value(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const matches = metric?.values.filter((v) => Object.entries(labels).every(([k, l]) => String((v.labels as Record<string, unknown>)[k]) === l));
  return matches === undefined || matches.length === 0 ? undefined : matches.reduce((sum, v) => sum + v.value, 0);
}

describe('metrics of requests, the store and token verification, in process', () => {
  let app: InProcessApp;
  let inner: Store;
  let store: MeasuredStore;
  let base: string;

  before(async () => {
    const refuse = async () => {
      throw new AuthenticationError('ERR_TOKEN_MALFORMED', 'Authorization header must be: Bearer <ID token>');
    };
    app = await startInProcessApp({ authenticator: measuredAuthenticator({ authenticate: refuse }), wrapStore: (s) => new MeasuredStore(s) });
    ({ base, inner } = app);
    assert.ok(app.store instanceof MeasuredStore);
    store = app.store;
  });

  after(async () => {
    await app?.close();
  });

  it('counts requests by route pattern and status, never by the path that carries the email', async () => {
    const route = { route: '/v1/keys/public/:email', method: 'GET', status: '200' };
    const before = (await value('ekm_http_requests_total', route)) ?? 0;
    assert.equal((await fetch(`${base}/v1/keys/public/${EMAIL}`)).status, 200);
    assert.equal((await fetch(`${base}/v1/keys/public/${EMAIL}`)).status, 200);
    assert.equal(await value('ekm_http_requests_total', route), before + 2);
    assert.equal((await fetch(`${base}/no/such/${EMAIL}`)).status, 404);
    assert.ok((await value('ekm_http_requests_total', { route: 'unmatched', status: '404' }))! >= 1);
    assert.ok((await value('ekm_http_request_duration_seconds', { route: '/v1/keys/public/:email' })) !== undefined);
    assert.ok((await value('ekm_store_operations_total', { operation: 'list', outcome: 'ok' }))! >= 2);
    const text = await registry.metrics();
    assert.doesNotMatch(text, /metrics\.alice|example\.com/i);
  });

  it('counts token verifications by the stable error code', async () => {
    const before = (await value('ekm_token_verifications_total', { outcome: 'ERR_TOKEN_MALFORMED' })) ?? 0;
    assert.equal((await fetch(`${base}/v1/keys/private`, { headers: { authorization: 'Basic x' } })).status, 401);
    assert.equal(await value('ekm_token_verifications_total', { outcome: 'ERR_TOKEN_MALFORMED' }), before + 1);
  });

  it('counts store outcomes by error code, marks the store down on an outage and up when it answers again', async () => {
    const failing = new MeasuredStore({
      ...inner,
      type: inner.type,
      probe: async () => {
        throw new StoreUnavailableError('test outage');
      },
    });
    await assert.rejects(failing.probe(), StoreUnavailableError);
    assert.equal(await value('ekm_store_up'), 0);
    assert.ok((await value('ekm_store_operations_total', { operation: 'probe', outcome: 'ERR_STORE_UNAVAILABLE' }))! >= 1);
    store = new MeasuredStore(inner);
    await store.probe();
    assert.equal(await value('ekm_store_up'), 1);
  });

  it('keeps the store up while its key id index is still being built (a 503 of the lookup, not an outage)', async () => {
    const indexing = new MeasuredStore({
      ...inner,
      type: inner.type,
      probe: () => inner.probe(),
      listByKeyId: async () => {
        throw new KeyIdIndexBuildingError();
      },
    });
    await indexing.probe();
    await assert.rejects(indexing.listByKeyId(FINGERPRINT), KeyIdIndexBuildingError);
    assert.equal(await value('ekm_store_up'), 1);
    assert.ok((await value('ekm_store_operations_total', { operation: 'listByKeyId', outcome: 'ERR_KEY_ID_INDEX_BUILDING' }))! >= 1);
  });

  it('counts the keys of a database store at most once a minute, without a fingerprint in any label', async () => {
    await store.upsert({ email: EMAIL, fingerprint: FINGERPRINT, privateKey: 'private', publicKey: 'public' });
    // Earlier scrapes counted (no keys then) and keep that count for a minute: a fresh decorator counts now.
    store = new MeasuredStore(inner);
    assert.equal(await value('ekm_store_keys'), 1);
    const counts = await value('ekm_store_operations_total', { operation: 'count', outcome: 'ok' });
    await store.upsert({ email: EMAIL, fingerprint: FINGERPRINT.replace('A1', 'B2'), privateKey: 'private 2', publicKey: 'public 2' });
    // Within the minute: the count is not read again.
    assert.equal(await value('ekm_store_keys'), 1);
    assert.equal(await value('ekm_store_operations_total', { operation: 'count', outcome: 'ok' }), counts);
    assert.doesNotMatch(await registry.metrics(), new RegExp(`${FINGERPRINT}|metrics\\.alice`, 'i'));
  });
});
