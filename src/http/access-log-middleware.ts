import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from '../logging/logger.js';
import { clientOrigin, trustedProxies } from './client-address.js';
import type { EkmState } from './ekm-state.js';

/**
 * Gives each request an id and a logger carrying it, and writes one access line per request:
 * method, path (never the query string, which may carry secrets), status, duration, the client's
 * address and scheme (believed from X-Forwarded-For only when the peer is one of `trustedProxyList`).
 */
export function accessLogMiddleware(logger: Logger, trustedProxyList: readonly string[]): Middleware<EkmState> {
  const trusted = trustedProxies(trustedProxyList);
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const origin = clientOrigin(trusted, ctx.req.socket.remoteAddress, ctx.protocol, ctx.get('X-Forwarded-For') || undefined, ctx.get('X-Forwarded-Proto') || undefined);
    ctx.state.clientAddress = origin.address;
    ctx.state.protocol = origin.protocol;
    ctx.state.requestId = randomUUID();
    ctx.state.logger = logger.child({ requestId: ctx.state.requestId });
    ctx.set('X-Request-Id', ctx.state.requestId);
    try {
      await next();
    } finally {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      ctx.state.logger.info('request', {
        method: ctx.method,
        path: ctx.path,
        status: ctx.status,
        clientAddress: ctx.state.clientAddress,
        protocol: ctx.state.protocol,
        durationMs: Math.round(durationMs * 10) / 10,
      });
    }
  };
}
