import type { Middleware } from 'koa';
import { BadRequestError, HeaderFieldsTooLargeError } from '../errors.js';
import type { EkmState } from './ekm-state.js';
import { MAX_HEADER_COUNT } from './http-server.js';

/** Headers that must appear once: Node keeps the first of several, a proxy in front may keep the last. */
const SINGLE_HEADERS = new Set(['host', 'authorization']);

/**
 * Refuses requests whose headers a proxy and the EKM could read differently: a header that must be
 * single but appears twice (400), and more header lines than the server keeps (431; Node drops the
 * ones past `maxHeadersCount` silently, which would hide the excess).
 */
export const headerChecks: Middleware<EkmState> = async (ctx, next) => {
  const raw = ctx.req.rawHeaders;
  if (raw.length / 2 >= MAX_HEADER_COUNT) throw new HeaderFieldsTooLargeError(`At most ${MAX_HEADER_COUNT - 1} header lines are accepted`);
  const seen = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!SINGLE_HEADERS.has(name)) continue;
    if (seen.has(name)) throw new BadRequestError(`The ${name} header appears more than once`, '', 'ERR_DUPLICATE_HEADER');
    seen.add(name);
  }
  await next();
};
