import cors from '@koa/cors';
import Router from '@koa/router';
import Koa from 'koa';
import helmet from 'koa-helmet';
import type { Acl } from '../acl/acl.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { Config } from '../config/config.js';
import { MethodNotAllowedError, NotFoundError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type { Store } from '../stores/store.js';
import { requestMetricsMiddleware } from '../metrics/request-metrics-middleware.js';
import { accessLogMiddleware } from './access-log-middleware.js';
import type { DrainState } from './drain-state.js';
import type { EkmState } from './ekm-state.js';
import { isAllowedOrigin } from './cors-origins.js';
import { errorMiddleware } from './error-middleware.js';
import { headerChecks } from './header-checks.js';
import { lingeringClose } from './lingering-close.js';
import { privateKeyRoutes } from './routes/private-key-routes.js';
import { publicKeyRoutes } from './routes/public-key-routes.js';
import { serviceRoutes } from './routes/service-routes.js';
import { WKD_PATH, wkdRoutes } from './routes/wkd-routes.js';

export interface AppParts {
  readonly config: Config;
  readonly logger: Logger;
  readonly store: Store;
  readonly authenticator: Authenticator;
  readonly acl: Acl;
  /** The worker's drain state: /health fails while it drains. Absent: never drains (tests in process). */
  readonly drain?: DrainState;
}

/**
 * API paths recognised behind a reverse proxy that adds a prefix (e.g. /ekm/v1/keys/private): the
 * prefix, then a known route tail. A prefix ending in an API version of its own (`/v2/keys/private`)
 * is an unknown version, not a prefix in front of the legacy `/keys/...` routes: it stays a 404.
 */
const PREFIXED_ROUTE = /^((?:\/[^/]+)*?)(\/(?:v1\/keys\/|keys\/|\.well-known\/openpgpkey\/).*|\/health|\/error)$/;
const VERSION_SEGMENT = /\/v\d+$/i;

/**
 * The Koa application. Middleware order: lingering close (an answer given before the body was read still
 * reaches the client), access log and request id, error rendering, header checks
 * (duplicates, count), security headers, CORS, path prefix removal, routes, then 404/405 for everything else.
 */
export function createApp(parts: AppParts): Koa<EkmState> {
  const { config, logger, store, authenticator, acl, drain } = parts;
  const app = new Koa<EkmState>({ proxy: false });
  // Errors are rendered by errorMiddleware; Koa's own handler would log to stderr.
  app.silent = true;
  app.use(lingeringClose);
  app.use(accessLogMiddleware(logger, config.api.trustedProxies));
  app.use(requestMetricsMiddleware());
  app.use(errorMiddleware);
  app.use(headerChecks);
  app.use(helmet());
  app.use(
    cors({
      origin: (ctx) => {
        // The Web Key Directory is public: any origin may read it (and preflight it).
        if (WKD_PATH.test(ctx.path)) return '*';
        const origin = ctx.get('Origin');
        return config.api.corsOrigins === undefined || isAllowedOrigin(config.api.corsOrigins, origin) ? origin : '';
      },
      allowMethods: ['GET', 'PUT', 'OPTIONS'],
      allowHeaders: ['Authorization', 'Content-Type'],
      exposeHeaders: ['X-Request-Id'],
      maxAge: 600,
    }),
  );
  app.use(async (ctx, next) => {
    const m = PREFIXED_ROUTE.exec(ctx.path);
    if (m !== null && m[1] !== '' && !(m[2]!.startsWith('/keys/') && VERSION_SEGMENT.test(m[1]!))) ctx.path = m[2]!;
    await next();
  });
  // Paths are case-sensitive (/V1/Keys/Private is no route), as the API's own documentation says.
  const router = new Router<EkmState>({ sensitive: true });
  serviceRoutes(router, { config, store, authenticator, drain });
  privateKeyRoutes(router, config, authenticator, acl, store);
  publicKeyRoutes(router, store);
  wkdRoutes(router, config, store);
  // The router answers an unknown path with nothing and a known path with a method it lacks with an
  // empty 405 (501 for a method no route has) and its Allow header; both get the error contract.
  app.use(async (ctx, next) => {
    await next();
    if (ctx.body !== undefined) return;
    // 501 with nothing allowed: a method no route has, on a path no route has.
    if (ctx.status === 404 || (ctx.status === 501 && !ctx.response.get('Allow'))) {
      throw new NotFoundError('Not found', `No endpoint at ${ctx.method} ${ctx.path}`);
    }
    if (ctx.status === 405 || ctx.status === 501) {
      throw new MethodNotAllowedError('Method not allowed on this path', `Allowed: ${ctx.response.get('Allow')}`);
    }
  });
  app.use(router.allowedMethods());
  app.use(router.routes());
  return app;
}
