import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A Koa app as node:http's request listener. Koa settles each request's promise itself (its error
 * handling answers and logs), so the listener discards the promise rather than handing node:http a
 * promise it would ignore.
 */
export function koaListener(app: { callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void> }): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = app.callback();
  return (req, res) => void handle(req, res);
}
