import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from '../logging/logger.js';
import type { EkmState } from './ekm-state.js';

/**
 * Gives each request an id and a logger carrying it, and writes one access line per request:
 * method, path (never the query string, which may carry secrets), status and duration.
 */
export function accessLogMiddleware(logger: Logger): Middleware<EkmState> {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
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
        durationMs: Math.round(durationMs * 10) / 10,
      });
    }
  };
}
