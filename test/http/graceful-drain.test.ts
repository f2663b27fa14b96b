import assert from 'node:assert/strict';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DrainState } from '../../src/http/drain-state.js';
import { createHttpServer, KEEP_ALIVE_TIMEOUT_MS, stopListening } from '../../src/http/http-server.js';

/** A kept-alive raw connection: send a request, read one whole answer (Content-Length bodies). */
class Connection {
  private received = '';
  closed = false;
  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => (this.received += c.toString('latin1')));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<Connection> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new Connection(socket);
  }

  async get(path: string): Promise<{ status: number; headers: string }> {
    this.received = '';
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: ekm\r\n\r\n`);
    const deadline = Date.now() + 5_000;
    for (;;) {
      const end = this.received.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(this.received)?.[1] ?? -1);
      if (end >= 0 && length >= 0 && this.received.length >= end + 4 + length) break;
      if (this.closed || Date.now() > deadline) throw new Error(`no answer (closed: ${this.closed}): ${JSON.stringify(this.received)}`);
      await sleep(10);
    }
    return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(this.received)?.[1]), headers: this.received.slice(0, this.received.indexOf('\r\n\r\n')).toLowerCase() };
  }

  async waitClosed(timeoutMs: number): Promise<number> {
    const started = Date.now();
    while (!this.closed) {
      if (Date.now() - started > timeoutMs) throw new Error('still open');
      await sleep(20);
    }
    return Date.now() - started;
  }
}

const answer: http.RequestListener = (_req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end('ok');
};

async function listen(drain: DrainState): Promise<{ server: http.Server; port: number }> {
  const server = createHttpServer(answer, undefined, undefined, drain);
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { server, port: (server.address() as AddressInfo).port };
}

describe('graceful drain of a worker: no kept-alive connection is closed under a request that may be on its way', () => {
  it('announces Keep-Alive: timeout=5 and keeps the connection open', async () => {
    const { server, port } = await listen(new DrainState());
    const connection = await Connection.open(port);
    const first = await connection.get('/');
    assert.equal(first.status, 200);
    assert.match(first.headers, /keep-alive: timeout=5\b/);
    assert.doesNotMatch(first.headers, /connection: close/);
    assert.equal(KEEP_ALIVE_TIMEOUT_MS, 5_000);
    assert.equal((await connection.get('/')).status, 200);
    server.closeAllConnections();
    server.close();
  });

  it('after the listener closed, answers the next request of an idle kept-alive connection with Connection: close, and refuses new connections', async () => {
    const drain = new DrainState();
    const { server, port } = await listen(drain);
    const idle = await Connection.open(port);
    assert.equal((await idle.get('/')).status, 200);
    let allClosed = false;
    drain.start(false);
    stopListening(server, () => (allClosed = true));
    // The connection was idle when the listener closed: it is still there, and its next request is answered.
    await sleep(300);
    assert.equal(idle.closed, false, 'an idle kept-alive connection is not closed when the listener closes');
    const last = await idle.get('/');
    assert.equal(last.status, 200);
    assert.match(last.headers, /connection: close/);
    await idle.waitClosed(2_000);
    await sleep(50);
    assert.equal(allClosed, true, 'the server is done once its connections are');
    await assert.rejects(Connection.open(port), /ECONNREFUSED/);
  });

  it('closes a connection left idle only after the announced keep-alive time', async () => {
    const drain = new DrainState();
    const { server, port } = await listen(drain);
    const idle = await Connection.open(port);
    assert.equal((await idle.get('/')).status, 200);
    const idleSince = Date.now();
    drain.start(false);
    stopListening(server, () => undefined);
    await idle.waitClosed(KEEP_ALIVE_TIMEOUT_MS + 3_000);
    const idleFor = Date.now() - idleSince;
    assert.ok(idleFor >= KEEP_ALIVE_TIMEOUT_MS, `closed after ${idleFor} ms idle, before the ${KEEP_ALIVE_TIMEOUT_MS} ms announced`);
  });
});
