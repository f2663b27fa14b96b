import type { Logger } from '../logging/logger.js';

/** What the middleware chain keeps on `ctx.state` for each request. */
export interface EkmState {
  /** Random id of this request, also sent back as X-Request-Id and put on every log entry. */
  requestId: string;
  /** The client's address: the TCP peer, or what the trusted proxies in front of it say (api.proxy.trusted). */
  clientAddress: string;
  /** `https` or `http` as the client used it: the EKM's own scheme, or what a trusted proxy says. */
  protocol: string;
  /** The process logger with this request's id attached. */
  logger: Logger;
}
