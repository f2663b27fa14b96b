import type { LogFields } from './logger.js';

/**
 * Log fields describing an error for the server-side log: its class, stable code, message and stack.
 * For uncaught errors, worker crashes and 500s; the HTTP client never sees these.
 */
export function errorFields(error: unknown): LogFields {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      error: error.name,
      errorCode: typeof code === 'string' || typeof code === 'number' ? String(code) : undefined,
      errorMessage: error.message,
      stack: error.stack,
    };
  }
  return { error: typeof error, errorMessage: String(error).slice(0, 1000) };
}
