import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.js';
import { createApp } from '../../src/http/app.js';
import type { Store } from '../../src/stores/store.js';
import { request } from '../support/http-client.js';
import { MemoryLogger } from '../support/memory-logger.js';

/** What an internal error message may carry, and a client must never see. */
const SECRET = 'secret internals: /var/lib/flowcrypt-ekm/keys.db row 4e1f';

/** A bug anywhere below the routes: what reaches the error middleware is not an EkmError. */
const failingStore: Store = {
  type: 'EncryptedDbStore',
  probe: async () => {},
  listByEmail: async (email) => {
    // A careless library may throw something that is not an Error.
    if (email.startsWith('string')) throw `${SECRET} thrown as a string`;
    throw new Error(`${SECRET} from the store`);
  },
  listByKeyId: async () => assert.fail('not called'),
  upsert: async () => assert.fail('not called'),
  delete: async () => assert.fail('not called'),
  all: () => assert.fail('not called'),
  close: async () => {},
};

// The real app and its real error middleware, served in-process from app.callback().
describe('error middleware: an unexpected error is a fixed 500, logged once on the server', () => {
  const logger = new MemoryLogger();
  let server: http.Server;
  let base: string;

  before(async () => {
    const config = parseConfig(
      ['org.id=error-test', 'api.https.enabled=false', 'store.type=EncryptedDbStore', 'store.db.folder=/nonexistent', 'store.db.encryption.key=unused',
        'auth.type=OpenIDConnectAuthenticator', 'auth.openid.issuer=https://issuer.invalid', 'auth.openid.audience=test', 'acl.type=SimpleAcl'].join('\n'),
      '/nonexistent/ekm.properties',
    );
    const app = createApp({
      config,
      logger,
      store: failingStore,
      authenticator: { authenticate: async () => { throw new Error(`${SECRET} from the authenticator`); } },
      acl: { authorizePrivateKeys: () => assert.fail('not called') },
    });
    server = http.createServer(app.callback()).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise((r) => server.close(r)));

  for (const [name, path, headers] of [
    ['an Error from the authenticator', '/v1/keys/private', { authorization: 'Bearer a.b.c' }],
    ['an Error from the store', '/v1/keys/public/alice@example.com', {}],
    ['a string thrown by the store', '/v1/keys/public/string@example.com', {}],
  ] as const) {
    it(`answers ${name} with the fixed body, without its message or stack`, async () => {
      const errorsBefore = logger.entries.filter((e) => e.level === 'error').length;
      const answer = await request(`${base}${path}`, { headers });
      const requestId = answer.headers['x-request-id'];
      assert.equal(typeof requestId, 'string');
      assert.equal(answer.status, 500, answer.text);
      assert.equal(answer.text, JSON.stringify({ code: 500, message: 'Internal server error', details: `Request id: ${requestId}` }));
      assert.equal(answer.headers['cache-control'], 'no-store');
      assert.doesNotMatch(answer.text, /secret|flowcrypt-ekm|4e1f|\bat |\.js:\d/);

      const logged = logger.entries.filter((e) => e.level === 'error').slice(errorsBefore);
      assert.equal(logged.length, 1, `logged at error ${logged.length} times: ${JSON.stringify(logged)}`);
      assert.equal(logged[0]!.message, 'Unhandled error');
      assert.equal(logged[0]!.fields['requestId'], requestId);
      // The operator gets what the client does not: what was thrown, with its stack when it has one.
      assert.match(String(logged[0]!.fields['stack']), / (from the store|from the authenticator|thrown as a string)/);
    });
  }
});
