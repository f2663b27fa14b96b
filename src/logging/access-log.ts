import type { Logger } from './logger.js';

/** One answered HTTP request. */
export interface AccessRecord {
  readonly method: string;
  /** The request URL as received (path and query); the query values are not logged, see pathForLog. */
  readonly url: string;
  readonly status: number;
  readonly durationMs: number;
  readonly clientAddress: string | undefined;
  readonly userAgent: string | undefined;
  readonly requestId: string | undefined;
}

/** Query parameters whose values are logged: the Web Key Directory's local part (`l`). */
const LOGGED_QUERY_VALUES = new Set(['l']);

/**
 * The path of a request URL for the log: the query keeps its parameter names, but every value except
 * the allowed ones becomes `...`, so a token or secret put in a query string is never logged.
 */
export function pathForLog(url: string): string {
  const at = url.indexOf('?');
  const path = printable(at < 0 ? url : url.slice(0, at)).slice(0, 2048);
  if (at < 0) return path;
  const query = url
    .slice(at + 1)
    .split('&')
    .filter((pair) => pair !== '')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = printable(eq < 0 ? pair : pair.slice(0, eq)).slice(0, 64);
      if (eq < 0) return name;
      return `${name}=${LOGGED_QUERY_VALUES.has(name) ? printable(pair.slice(eq + 1)).slice(0, 256) : '...'}`;
    });
  return query.length === 0 ? path : `${path}?${query.join('&')}`;
}

/** The access line of a request, at info (warn for a 5xx), without headers, body or query values. */
export function logAccess(logger: Logger, record: AccessRecord): void {
  logger.log(record.status >= 500 ? 'warn' : 'info', 'access', {
    access: true,
    method: printable(record.method).slice(0, 16),
    path: pathForLog(record.url),
    status: record.status,
    durationMs: Math.round(record.durationMs * 10) / 10,
    clientAddress: record.clientAddress,
    userAgent: record.userAgent === undefined ? undefined : printable(record.userAgent).slice(0, 256),
    requestId: record.requestId,
  });
}

function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, '?');
}
