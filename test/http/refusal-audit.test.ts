import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from '../../testbed/http-client.js';
import { startInProcessApp, type InProcessApp } from '../support/in-process-app.js';

/** Every token is alice's: the upload itself is what gets refused. */
const alice = { authenticate: async () => ({ email: 'alice@example.com', hostedDomain: undefined }) };

describe('refusals of an upload are audited (the body, and admin provisioning)', () => {
  let client: InProcessApp;
  let admin: InProcessApp;

  before(async () => {
    client = await startInProcessApp({ authenticator: alice });
    admin = await startInProcessApp({ authenticator: alice, properties: ['api.keys.provisioning=admin'] });
  });

  after(async () => {
    await client?.close();
    await admin?.close();
  });

  /** PUTs the body and returns the answer's status and the audit entry of that request. */
  const put = async (app: InProcessApp, headers: Record<string, string>, body: string | Buffer) => {
    const answer = await request(`${app.base}/v1/keys/private`, { method: 'PUT', headers: { authorization: 'Bearer x', 'user-agent': 'refusal-audit', ...headers }, body });
    const requestId = answer.headers['x-request-id'];
    const audit = app.logger.entries.find((e) => e.fields.requestId === requestId && e.fields.audit !== undefined);
    assert.ok(audit, `no audit entry for the ${answer.status}`);
    return { status: answer.status, code: answer.json?.code as number, audit: audit.fields };
  };

  const cases: [string, Record<string, string>, () => string | Buffer, number, string][] = [
    ['a body that is not JSON (415)', { 'content-type': 'text/plain' }, () => 'hello', 415, 'ERR_UNSUPPORTED_MEDIA_TYPE'],
    ['a body over 1 MB (413)', { 'content-type': 'application/json' }, () => Buffer.alloc(2 * 1024 * 1024, 0x20), 413, 'ERR_PAYLOAD_TOO_LARGE'],
    ['malformed JSON (400)', { 'content-type': 'application/json' }, () => '{"privateKey":', 400, 'ERR_BAD_REQUEST'],
  ];
  for (const [name, headers, body, status, code] of cases) {
    it(`audits ${name} as a refused private-key.write`, async () => {
      const refused = await put(client, headers, body());
      assert.equal(refused.status, status);
      assert.equal(refused.code, status);
      assert.equal(refused.audit.audit, 'private-key.write');
      assert.equal(refused.audit.outcome, 'refused');
      assert.equal(refused.audit.status, status);
      assert.equal(refused.audit.code, code);
      assert.equal(refused.audit.email, 'alice@example.com');
      assert.equal(refused.audit.clientAddress, '127.0.0.1');
    });
  }

  it('audits a PUT refused by admin provisioning (405)', async () => {
    const refused = await put(admin, { 'content-type': 'application/json' }, '{}');
    assert.equal(refused.status, 405);
    assert.equal(refused.audit.audit, 'private-key.write');
    assert.equal(refused.audit.status, 405);
    assert.equal(refused.audit.code, 'ERR_CLIENT_UPLOAD_DISABLED');
  });
});
