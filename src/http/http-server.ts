import http from 'node:http';
import https from 'node:https';
import { Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DrainState } from './drain-state.js';

/** How long a request may take to arrive; past it Node answers 408. */
export interface RequestTimeouts {
  /** For the header lines. */
  readonly headersMs: number;
  /** For the whole request, body included: a trickled body is cut off here. */
  readonly requestMs: number;
}

export const REQUEST_TIMEOUTS: RequestTimeouts = { headersMs: 10_000, requestMs: 20_000 };
/** Header lines accepted; the request-limits middleware answers 431 at this count. */
export const MAX_HEADER_COUNT = 64;
/** Bytes of all header lines together (Node answers 431 past it). */
export const MAX_HEADER_BYTES = 16 * 1024;
/**
 * How long a kept-alive connection may stay idle, announced in every answer (`Keep-Alive:
 * timeout=5`). Short, so that a draining worker is done within seconds: it never closes a connection
 * a request may be on its way on, only those idle past what it announced.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/**
 * The connection is closed this long after the announced timeout (Node's own default, made
 * explicit): a client that reuses a connection just before the announced time still gets its answer.
 */
const KEEP_ALIVE_TIMEOUT_BUFFER_MS = 1_000;

/**
 * The daemon's HTTP(S) server: Node's own limits set for a key manager facing anyone (a trickled
 * body, a header flood), and Node's own refusals (malformed request 400, timeout 408, headers too
 * large 431) answered in the error contract instead of Node's empty bodies.
 */
export function createHttpServer(callback: http.RequestListener, tls?: https.ServerOptions, timeouts = REQUEST_TIMEOUTS, drain?: DrainState): http.Server {
  // Node checks the request timeouts on this interval (30 s by default, so a 20 s limit held up to 50 s).
  const options: http.ServerOptions = {
    maxHeaderSize: MAX_HEADER_BYTES,
    connectionsCheckingInterval: Math.min(1_000, timeouts.headersMs / 2),
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    keepAliveTimeoutBuffer: KEEP_ALIVE_TIMEOUT_BUFFER_MS,
  };
  // A draining worker's answers close their connection: set before the app runs, so every answer,
  // an error's too, carries it (Node then ends the connection after the answer).
  const listener: http.RequestListener =
    drain === undefined
      ? callback
      : (req, res) => {
          if (drain.draining) res.setHeader('Connection', 'close');
          callback(req, res);
        };
  const server = tls === undefined ? http.createServer(options, listener) : https.createServer({ ...options, ...tls }, listener);
  server.headersTimeout = timeouts.headersMs;
  server.requestTimeout = timeouts.requestMs;
  server.maxHeadersCount = MAX_HEADER_COUNT;
  server.on('clientError', answerClientError);
  return server;
}

/**
 * Stops accepting connections; calls back once every open connection has ended. Not
 * http.Server#close, which since Node.js 19 also destroys every connection without a request in
 * progress, among them kept-alive ones a request may be arriving on at that moment (the client
 * would see a reset, or no answer): net.Server's own close leaves them to end by themselves, after
 * their next answer (`Connection: close`, see DrainState) or once idle past the keep-alive timeout.
 */
export function stopListening(server: http.Server, onAllClosed: () => void): void {
  NetServer.prototype.close.call(server, onAllClosed);
}

/** What Node's parser errors mean to the client (Node's own mapping, with a body). */
function statusOf(error: NodeJS.ErrnoException): { status: number; message: string } {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, message: 'Request header fields too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_HEADER_TIMEOUT':
      return { status: 408, message: 'Request timeout' };
    default:
      return { status: 400, message: 'Bad request' };
  }
}

/** `clientError`: a request Node could not parse or that timed out; answered once, then closed. */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  // The client is gone: nothing can be sent any more (the check Node's documentation gives).
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const { status, message } = statusOf(error);
  const body = JSON.stringify({ code: status, message, details: '' });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
}
