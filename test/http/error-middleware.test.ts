import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { parseConfig } from '../../src/config/load-config.js';
import { KeyRejectedError, KeyVerificationBusyError } from '../../src/errors.js';
import { createApp } from '../../src/http/app.js';
import type { EkmState } from '../../src/http/ekm-state.js';
import { errorMiddleware } from '../../src/http/error-middleware.js';
import type { Store } from '../../src/stores/store.js';
import { request } from '../../testbed/http-client.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';
import { propertiesText } from '../../testbed/ekm-daemon.js';
import { koaListener } from '../../src/http/koa-listener.js';

/** What an internal error message may carry, and a client must never see. */
const SECRET = 'secret internals: /var/lib/flowcrypt-ekm/keys.db row 4e1f';

/** A bug anywhere below the routes: what reaches the error middleware is not an EkmError. */
const failingStore: Store = {
  type: 'EncryptedDbStore',
  probe: async () => {},
  listByEmail: async (email) => {
    // A careless library may throw something that is not an Error.
    // Deliberately not an Error: the middleware must answer a thrown string with the fixed 500.
    // eslint-disable-next-line @typescript-eslint/only-throw-error
    if (email.startsWith('string')) throw `${SECRET} thrown as a string`;
    throw new Error(`${SECRET} from the store`);
  },
  listByKeyId: async () => assert.fail('not called'),
  upsert: async () => assert.fail('not called'),
  delete: async () => assert.fail('not called'),
  all: () => assert.fail('not called'),
  inventory: () => assert.fail('not called'),
  close: async () => {},
};

// The real app and its real error middleware, served in-process from app.callback().
describe('error middleware: an unexpected error is a fixed 500, logged once on the server', () => {
  const logger = new MemoryLogger();
  let server: http.Server;
  let base: string;

  before(async () => {
    const config = parseConfig(
      propertiesText({ ...baseProperties({ orgId: 'error-test' }), ...encryptedDbProperties('/nonexistent') }),
      '/nonexistent/ekm.properties',
    );
    const app = createApp({
      config,
      logger,
      store: failingStore,
      authenticator: {
        authenticate: async () => {
          throw new Error(`${SECRET} from the authenticator`);
        },
      },
      acl: { authorizePrivateKeys: () => assert.fail('not called') },
    });
    server = http.createServer(koaListener(app)).listen(0, '127.0.0.1');
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
      assert.equal(answer.text, JSON.stringify({ code: 500, message: 'Internal server error', details: `Request id: ${String(requestId)}` }));
      assert.equal(answer.headers['cache-control'], 'no-store');
      assert.doesNotMatch(answer.text, /secret|flowcrypt-ekm|4e1f|\bat |\.js:\d/);

      const logged = logger.entries.filter((e) => e.level === 'error').slice(errorsBefore);
      assert.equal(logged.length, 1, `logged at error ${logged.length} times: ${JSON.stringify(logged)}`);
      assert.equal(logged[0]!.message, 'Unhandled error');
      assert.equal(logged[0]!.fields.requestId, requestId);
      // The operator gets what the client does not: what was thrown, with its stack when it has one.
      assert.match(String(logged[0]!.fields.stack), / (from the store|from the authenticator|thrown as a string)/);
    });
  }
});

// The middleware alone, with the errors a key verification can end in.
describe('error middleware: a passing overload', () => {
  const logger = new MemoryLogger();
  let server: http.Server;
  let base: string;
  before(async () => {
    const app = new Koa<EkmState>();
    app.silent = true;
    app.use(async (ctx, next) => {
      ctx.state.logger = logger;
      ctx.state.requestId = 'test';
      await next();
    });
    app.use(errorMiddleware);
    app.use(async (ctx) => {
      if (ctx.path === '/busy') throw new KeyVerificationBusyError('32 keys are already waiting for verification');
      throw new KeyRejectedError('The key took too long to verify', 'Verification is limited to 2000 ms');
    });
    server = http.createServer(koaListener(app)).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise((r) => server.close(r)));

  it('answers a passing overload with 503 and Retry-After, in the error format', async () => {
    const answer = await request(`${base}/busy`);
    assert.equal(answer.status, 503);
    assert.equal(answer.headers['retry-after'], '1');
    assert.deepEqual(answer.json, {
      code: 503,
      message: 'Too many keys are being verified at the moment; try again shortly',
      details: '32 keys are already waiting for verification',
    });
  });

  it('gives other errors no Retry-After', async () => {
    const answer = await request(`${base}/slow`);
    assert.equal(answer.status, 400);
    assert.equal(answer.headers['retry-after'], undefined);
    assert.equal(answer.json.message, 'The key took too long to verify');
  });
});
