import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AuthenticationError } from '../../src/errors.js';
import { startInProcessApp, type InProcessApp } from '../support/in-process-app.js';

/** Every token is refused: the refusal is audited, with the client's address. */
const refuse = {
  authenticate: async () => {
    throw new AuthenticationError('ERR_TOKEN_MISSING', 'Missing Authorization header');
  },
};

/** GET /v1/keys/private with these headers; the access line and the audit entry of that request. */
async function fetchPrivate(app: InProcessApp, headers: Record<string, string>) {
  const answer = await fetch(`${app.base}/v1/keys/private`, { headers });
  assert.equal(answer.status, 401);
  const requestId = answer.headers.get('x-request-id');
  const mine = app.logger.entries.filter((e) => e.fields.requestId === requestId);
  const access = mine.find((e) => e.message === 'request');
  const audit = mine.find((e) => e.fields.audit !== undefined);
  assert.ok(access && audit, JSON.stringify(mine));
  return { access: access.fields, audit: audit.fields };
}

describe('the client address in the audit trail and access log, in process', () => {
  let untrusting: InProcessApp;
  let trusting: InProcessApp;

  before(async () => {
    untrusting = await startInProcessApp({ authenticator: refuse });
    trusting = await startInProcessApp({ authenticator: refuse, properties: ['api.proxy.trusted=10.0.0.0/8,127.0.0.1'] });
  });

  after(async () => {
    await untrusting?.close();
    await trusting?.close();
  });

  it('ignores spoofed X-Forwarded-For and X-Forwarded-Proto when no proxy is trusted', async () => {
    const { access, audit } = await fetchPrivate(untrusting, { 'X-Forwarded-For': '198.51.100.7', 'X-Forwarded-Proto': 'https' });
    assert.equal(audit.clientAddress, '127.0.0.1');
    assert.equal(access.clientAddress, '127.0.0.1');
    assert.equal(access.protocol, 'http');
  });

  it('takes the client from X-Forwarded-For sent by a trusted proxy, skipping trusted hops', async () => {
    // The client's own (spoofed) entry comes first; the proxies appended the real one and their own.
    const { access, audit } = await fetchPrivate(trusting, { 'X-Forwarded-For': '192.0.2.66, 198.51.100.7, 10.20.30.40', 'X-Forwarded-Proto': 'https' });
    assert.equal(audit.clientAddress, '198.51.100.7');
    assert.equal(access.clientAddress, '198.51.100.7');
    assert.equal(access.protocol, 'https');
  });

  it('uses the peer when a trusted proxy sends no X-Forwarded-For', async () => {
    const { audit } = await fetchPrivate(trusting, {});
    assert.equal(audit.clientAddress, '127.0.0.1');
  });
});
