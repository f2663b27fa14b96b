import type { Middleware } from 'koa';
import { ClientAbortedError, EkmError } from '../errors.js';
import type { EkmState } from './ekm-state.js';

/**
 * The one place errors become responses: `{"code": status, "message", "details"}`, all three present
 * (iOS drops bodies without them). EkmErrors carry their own status and words; anything else is a
 * bug, answered with a fixed 500 and logged once at error with its stack, on the server side only.
 */
export const errorMiddleware: Middleware<EkmState> = async (ctx, next) => {
  try {
    await next();
  } catch (e) {
    let status: number;
    let message: string;
    let details: string;
    if (e instanceof EkmError) {
      ({ status, message, details } = e);
      if (e.retryAfterSeconds !== undefined) ctx.set('Retry-After', String(e.retryAfterSeconds));
      if (status >= 500) ctx.state.logger.warn(message, { code: e.code, details, status });
      else if (e instanceof ClientAbortedError) ctx.state.logger.debug(message, { code: e.code });
    } else {
      const httpError = e as { status?: unknown; expose?: unknown; message?: unknown };
      if (typeof httpError.status === 'number' && httpError.status >= 400 && httpError.status < 500 && httpError.expose === true) {
        // A client error raised by Koa or a middleware (e.g. a malformed URI).
        status = httpError.status;
        message = String(httpError.message);
        details = '';
      } else {
        status = 500;
        message = 'Internal server error';
        details = `Request id: ${ctx.state.requestId}`;
        ctx.state.logger.error('Unhandled error', { stack: (e as Partial<Error> | null | undefined)?.stack ?? String(e) });
      }
    }
    ctx.status = status;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { code: status, message, details };
  }
};
