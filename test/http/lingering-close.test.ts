import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { AuthenticationError } from '../../src/errors.js';
import { accessLogMiddleware } from '../../src/http/access-log-middleware.js';
import type { EkmState } from '../../src/http/ekm-state.js';
import { errorMiddleware } from '../../src/http/error-middleware.js';
import { MAX_BODY_BYTES, readJsonObject } from '../../src/http/json-body.js';
import { LINGER_MAX_BYTES, lingeringClose } from '../../src/http/lingering-close.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { request } from '../../testbed/http-client.js';
import { TestPki } from '../../testbed/test-pki.js';
import { koaListener } from '../../src/http/koa-listener.js';

/** The app's outer middleware in the app's order, and two handlers: one reads the JSON body, one refuses before reading. */
function bodyApp(logger: MemoryLogger): Koa<EkmState> {
  const app = new Koa<EkmState>();
  app.silent = true;
  app.use(lingeringClose);
  app.use(accessLogMiddleware(logger, []));
  app.use(errorMiddleware);
  app.use(async (ctx) => {
    if (ctx.path === '/refuse') throw new AuthenticationError('ERR_TOKEN_MISSING', 'No token');
    ctx.body = { keys: Object.keys(await readJsonObject(ctx)) };
  });
  return app;
}

// Over TLS, as the daemon serves: a reset there loses the answer far more often than on plain loopback TCP.
describe('answers given before the request body was read reach the client (lingering close)', () => {
  const logger = new MemoryLogger();
  let pki: TestPki;
  let server: https.Server;
  let base: string;
  let port: number;
  before(async () => {
    pki = new TestPki();
    const cert = pki.issue('server', { hosts: ['127.0.0.1'] });
    server = https.createServer({ key: cert.keyPem, cert: cert.certPem }, koaListener(bodyApp(logger))).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    port = (server.address() as AddressInfo).port;
    base = `https://127.0.0.1:${port}`;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    pki.remove();
  });
  const connect = async () => {
    const socket = tls.connect({ port, host: '127.0.0.1', ca: pki.caCertPem });
    await new Promise((r) => socket.once('secureConnect', r));
    return socket;
  };

  const threeMegabytes = JSON.stringify({ privateKey: 'x'.repeat(3 * 1024 * 1024) });
  const put = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    request(`${base}${path}`, { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body, ca: pki.caCertPem });

  it('a 3 MB body with its Content-Length gets the 413 in the error format, every time, and Connection: close', async () => {
    for (let i = 0; i < 20; i++) {
      const a = await put('/', threeMegabytes);
      assert.equal(a.status, 413, `run ${i}: ${a.text}`);
      assert.deepEqual(a.json, { code: 413, message: 'Request body is too large', details: `The limit is ${MAX_BODY_BYTES} bytes` });
      assert.equal(a.headers.connection, 'close');
    }
  });

  /** Sends `total` bytes in 64 KB pieces, a few ms apart, so that the client is still writing when the answer comes. */
  const sendSlowly = (path: string, total: number, headers: Record<string, string>) =>
    new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = https.request(`${base}${path}`, {
        method: 'PUT',
        agent: false,
        ca: pki.caCertPem,
        headers: { 'content-type': 'application/json', ...headers },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      });
      req.on('error', reject);
      let sent = 0;
      const more = () => {
        if (sent >= total) return void req.end();
        req.write(Buffer.alloc(64 * 1024, 0x78));
        sent += 64 * 1024;
        setTimeout(more, 2);
      };
      more();
    });

  it('a 3 MB body still being sent gets the 413, with or without Content-Length', async () => {
    const total = 3 * 1024 * 1024;
    const framings: Record<string, string>[] = [{ 'content-length': String(total) }, { 'transfer-encoding': 'chunked' }];
    for (const headers of framings) {
      for (let i = 0; i < 5; i++) {
        const answer = await sendSlowly('/', total, headers);
        assert.equal(answer.status, 413, `run ${i} ${JSON.stringify(headers)}: ${answer.body}`);
        assert.equal(JSON.parse(answer.body).code, 413);
        assert.equal(answer.headers.connection, 'close');
      }
    }
  });

  it('a refusal before the body is read (401) reaches a client that is still sending, with Connection: close', async () => {
    for (let i = 0; i < 5; i++) {
      const answer = await sendSlowly('/refuse', 1024 * 1024, { 'content-length': String(1024 * 1024) });
      assert.equal(answer.status, 401, answer.body);
      assert.equal(JSON.parse(answer.body).code, 401);
      assert.equal(answer.headers.connection, 'close');
    }
  });

  it('the server reads the rest of the body before it closes, so the client never sees a reset', async () => {
    for (let i = 0; i < 5; i++) {
      const socket = await connect();
      const total = 2 * 1024 * 1024;
      const errors: string[] = [];
      let received = '';
      socket.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
      socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
      const closed = new Promise((r) => socket.once('close', r));
      socket.write(`PUT /refuse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`);
      for (let sent = 0; sent < total && !socket.destroyed; sent += 32 * 1024) {
        socket.write(Buffer.alloc(32 * 1024, 0x78));
        await new Promise((r) => setTimeout(r, 1));
      }
      await closed;
      assert.match(received, /^HTTP\/1\.1 401 /, `run ${i}`);
      assert.deepEqual(errors, [], `run ${i}: the connection was reset while the client was sending`);
    }
  });

  it('a small body is read and answered as before', async () => {
    const a = await put('/', JSON.stringify({ privateKey: 'k' }));
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(a.json, { keys: ['privateKey'] });
  });

  it('a body far past the linger bound is not waited for: the connection closes at once', async () => {
    const socket = await connect();
    const declared = MAX_BODY_BYTES + LINGER_MAX_BYTES + 1024 * 1024;
    socket.write(`PUT / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n{"a":"`);
    const started = Date.now();
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', () => {});
    await new Promise((r) => socket.once('close', r));
    assert.ok(Date.now() - started < 2_000, `closed after ${Date.now() - started} ms`);
    assert.match(received, /^HTTP\/1\.1 413 /);
  });

  it('a client that goes away mid-body is a debug entry, never an error-level 500', async () => {
    const socket = await connect();
    socket.write('PUT / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":"');
    await new Promise((r) => setTimeout(r, 100));
    socket.destroy();
    const deadline = Date.now() + 5_000;
    while (!logger.entries.some((e) => e.fields.code === 'ERR_CLIENT_ABORTED') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const aborted = logger.entries.find((e) => e.fields.code === 'ERR_CLIENT_ABORTED');
    assert.equal(aborted?.level, 'debug', JSON.stringify(logger.entries));
    assert.deepEqual(
      logger.entries.filter((e) => e.level === 'error'),
      [],
    );
  });
});
