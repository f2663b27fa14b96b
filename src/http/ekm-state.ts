import type { Logger } from '../logging/logger.js';

/** What the middleware chain keeps on `ctx.state` for each request. */
export interface EkmState {
  /** Random id of this request, also sent back as X-Request-Id and put on every log entry. */
  requestId: string;
  /** The process logger with this request's id attached. */
  logger: Logger;
}
