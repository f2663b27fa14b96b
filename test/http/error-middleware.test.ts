import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { KeyRejectedError, KeyVerificationBusyError } from '../../src/errors.js';
import type { EkmState } from '../../src/http/ekm-state.js';
import { errorMiddleware } from '../../src/http/error-middleware.js';
import { request } from '../support/http-client.js';
import { MemoryLogger } from '../support/memory-logger.js';

describe('error middleware', () => {
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
    server = http.createServer(app.callback()).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('answers a passing overload with 503 and Retry-After, in the error format', async () => {
    const answer = await request(`${base}/busy`);
    assert.equal(answer.status, 503);
    assert.equal(answer.headers['retry-after'], '1');
    assert.deepEqual(answer.json, { code: 503, message: 'Too many keys are being verified at the moment; try again shortly', details: '32 keys are already waiting for verification' });
  });

  it('gives other errors no Retry-After', async () => {
    const answer = await request(`${base}/slow`);
    assert.equal(answer.status, 400);
    assert.equal(answer.headers['retry-after'], undefined);
    assert.equal(answer.json.message, 'The key took too long to verify');
  });
});
