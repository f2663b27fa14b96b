import type { IncomingMessage } from 'node:http';
import type { Middleware } from 'koa';
import type { EkmState } from './ekm-state.js';

/** How much of a body that no handler read is read and discarded before the answer goes out. */
export const LINGER_MAX_BYTES = 4 * 1024 * 1024;
/** How long the rest of such a body may take to arrive. */
export const LINGER_MAX_MS = 5_000;

/**
 * Lingering close, as nginx does it: an answer given before the request body was read (413, 401,
 * 415 ...) would otherwise close a socket that still has unread bytes, the kernel answers those
 * with a reset, and a client still sending sees EPIPE or ECONNRESET instead of the answer. So the
 * rest of the body is read and discarded first, within LINGER_MAX_BYTES and LINGER_MAX_MS, and the
 * answer says `Connection: close`. A body past either bound is not waited for: the answer goes out
 * at once and the connection closes (a client sending that much has been told the limit).
 */
export const lingeringClose: Middleware<EkmState> = async (ctx, next) => {
  await next();
  const req = ctx.req;
  if (req.complete || req.destroyed) return;
  ctx.set('Connection', 'close');
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(declared) && declared - req.socket.bytesRead > LINGER_MAX_BYTES) return;
  await discardRest(req);
};

/** Reads and drops what is left of the body; resolves at its end, on a bound, or when the client goes. */
function discardRest(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    let bytes = 0;
    const done = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', done);
      req.off('close', done);
      req.off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > LINGER_MAX_BYTES) done();
    };
    const timer = setTimeout(done, LINGER_MAX_MS);
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.once('error', done);
    req.resume();
  });
}
