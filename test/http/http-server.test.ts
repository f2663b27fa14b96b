import assert from 'node:assert/strict';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { OpenIdConnectAuthenticator } from '../../src/auth/openid-connect-authenticator.js';
import { AuthenticationError } from '../../src/errors.js';
import type { EkmState } from '../../src/http/ekm-state.js';
import { errorMiddleware } from '../../src/http/error-middleware.js';
import { headerChecks } from '../../src/http/header-checks.js';
import { MAX_HEADER_COUNT, createHttpServer } from '../../src/http/http-server.js';
import { readJsonObject } from '../../src/http/json-body.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { koaListener } from '../../src/http/koa-listener.js';

const TIMEOUTS = { headersMs: 1_000, requestMs: 1_500 };

/** Writes raw bytes on a fresh connection and returns everything the server sent until it closed. */
async function raw(port: number, text: string, holdOpenMs = 0): Promise<{ status: number; body: unknown; elapsedMs: number; text: string }> {
  const socket = net.connect(port, '127.0.0.1');
  const started = Date.now();
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  socket.on('error', () => {});
  socket.write(text);
  if (holdOpenMs > 0) await new Promise((r) => setTimeout(r, holdOpenMs));
  await new Promise((r) => socket.once('close', r));
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0);
  const bodyText = received.slice(received.indexOf('\r\n\r\n') + 4);
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = bodyText;
  }
  return { status, body, elapsedMs: Date.now() - started, text: received };
}

describe("the daemon's HTTP server: Node's own refusals and header checks in the error contract", () => {
  let server: http.Server;
  let port: number;
  before(async () => {
    const app = new Koa<EkmState>();
    app.silent = true;
    app.use(async (ctx, next) => {
      ctx.state.logger = new MemoryLogger();
      await next();
    });
    app.use(errorMiddleware);
    app.use(headerChecks);
    app.use(async (ctx) => {
      ctx.body = ctx.method === 'PUT' ? await readJsonObject(ctx) : { ok: true };
    });
    server = createHttpServer(koaListener(app), undefined, TIMEOUTS).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });

  it('a request Node cannot parse gets 400 with the JSON body', async () => {
    const a = await raw(port, 'GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n');
    assert.equal(a.status, 400, a.text);
    assert.deepEqual(a.body, { code: 400, message: 'Bad request', details: '' });
  });

  it('header lines over the size limit get 431 with the JSON body', async () => {
    const a = await raw(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.equal(a.status, 431, a.text);
    assert.deepEqual(a.body, { code: 431, message: 'Request header fields too large', details: '' });
  });

  it('more header lines than the server keeps get 431', async () => {
    const lines = Array.from({ length: MAX_HEADER_COUNT + 5 }, (_, i) => `X-H${i}: v\r\n`).join('');
    const a = await raw(port, `GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${lines}\r\n`);
    assert.equal(a.status, 431, a.text);
    assert.equal((a.body as { code: number }).code, 431);
  });

  it('a duplicate Host or Authorization header is a 400', async () => {
    for (const name of ['Host', 'Authorization']) {
      const a = await raw(port, `GET / HTTP/1.1\r\nHost: x\r\n${name}: y\r\n${name === 'Host' ? '' : `${name}: z\r\n`}Connection: close\r\n\r\n`);
      assert.equal(a.status, 400, `${name}: ${a.text}`);
      assert.equal((a.body as { code: number }).code, 400);
    }
    const ok = await raw(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(ok.status, 200, ok.text);
  });

  it('a trickled body is cut off at the request timeout with a 408 in the error format', async () => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', () => {});
    const started = Date.now();
    socket.write('PUT / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n');
    const trickle = setInterval(() => socket.writable && socket.write('a'), 100);
    await new Promise((r) => socket.once('close', r));
    clearInterval(trickle);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < TIMEOUTS.requestMs + 2_500, `closed after ${elapsed} ms`);
    assert.match(received, /^HTTP\/1\.1 408 /);
    assert.deepEqual(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)), { code: 408, message: 'Request timeout', details: '' });
  });
});

describe('the ID token size cap', () => {
  it('refuses an oversized token before any parsing or JWKS fetch', async () => {
    let fetched = 0;
    const authenticator = new OpenIdConnectAuthenticator(
      { issuer: 'https://issuer.invalid', audience: ['a'], jwks: 'https://issuer.invalid/jwks' },
      async () => {
        fetched++;
        throw new Error('no fetch expected');
      },
      new MemoryLogger(),
    );
    const huge = `Bearer ${'a'.repeat(9_000)}.${'b'.repeat(100)}.c`;
    await assert.rejects(authenticator.authenticate(huge), (e: unknown) => e instanceof AuthenticationError && e.code === 'ERR_TOKEN_TOO_LARGE');
    assert.equal(fetched, 0);
    await assert.rejects(authenticator.authenticate(`Bearer ${'a'.repeat(100)}.b.c`), (e: unknown) => e instanceof AuthenticationError && e.code !== 'ERR_TOKEN_TOO_LARGE');
  });
});
