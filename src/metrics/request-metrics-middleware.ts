import type { Middleware } from 'koa';
import type { EkmState } from '../http/ekm-state.js';
import { httpRequestDuration, httpRequests } from './ekm-metrics.js';

/** Methods reported by name; any other (Node accepts a few dozen) is `other`, keeping the label bounded. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS']);

/**
 * Counts and times each request by the route pattern the router matched (`/v1/keys/public/:email`),
 * never the path itself, which carries emails; `unmatched` for a path no route has.
 */
export function requestMetricsMiddleware(): Middleware<EkmState> {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      // @koa/router documents `_matchedRoute` on the context (its README and types): the layer's path.
      const matched = (ctx as { _matchedRoute?: string | RegExp })._matchedRoute;
      const route = typeof matched === 'string' ? matched : 'unmatched';
      const method = KNOWN_METHODS.has(ctx.method) ? ctx.method : 'other';
      httpRequests.inc({ route, method, status: String(ctx.status) });
      httpRequestDuration.observe({ route, method }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  };
}
