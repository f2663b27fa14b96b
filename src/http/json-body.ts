import type { Context } from 'koa';
import { BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../errors.js';

/** Largest request body accepted. */
export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * Reads the request body as a JSON object: `application/json` only (415 otherwise), at most
 * MAX_BODY_BYTES (413, checked before and while reading), well-formed (400).
 */
export async function readJsonObject(ctx: Context): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) {
    throw new UnsupportedMediaTypeError(`Content-Type was ${ctx.get('Content-Type') || 'missing'}`);
  }
  const declared = Number(ctx.get('Content-Length') || '0');
  if (declared > MAX_BODY_BYTES) throw new PayloadTooLargeError(MAX_BODY_BYTES);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      // Stop reading; the connection is closed after the answer rather than draining the rest.
      ctx.set('Connection', 'close');
      throw new PayloadTooLargeError(MAX_BODY_BYTES);
    }
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new BadRequestError('Request body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new BadRequestError('Request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** A required string field of a JSON body (400 when missing or not a string). */
export function stringField(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value === '') throw new BadRequestError(`Field '${name}' is required and must be a string`);
  return value;
}

/** An optional string field (400 when present but not a string). */
export function optionalStringField(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new BadRequestError(`Field '${name}' must be a string`);
  return value;
}
