import type { IncomingMessage } from 'node:http';
import type { Context } from 'koa';
import { BadRequestError, ClientAbortedError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../errors.js';

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
  const text = (await readLimited(ctx.req, MAX_BODY_BYTES)).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
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

/**
 * The body, at most `limit` bytes (413 past it). Read with listeners rather than `for await`: leaving
 * an async iterator destroys the request and its socket before the 413 is written, and the client
 * sees a reset. On overflow the request is only paused; lingeringClose discards the rest.
 */
function readLimited(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error?: Error) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (error === undefined) resolve(Buffer.concat(chunks));
      else reject(error);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish(new PayloadTooLargeError(limit));
      } else {
        chunks.push(chunk);
      }
    };
    const onEnd = () => finish();
    // The request stream fails only when the client goes away mid-body (ECONNRESET 'aborted').
    const onError = () => finish(new ClientAbortedError());
    const onClose = () => finish(new ClientAbortedError());
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}
