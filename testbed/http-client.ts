import http from 'node:http';
import https from 'node:https';

export interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  // `any` on purpose: each test asserts the shape it expects, and node:assert fails on any other.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly json: any;
}

/**
 * One HTTP(S) request on a fresh connection, trusting `ca` for HTTPS. A server that answers before
 * reading the whole body (413) is fine: the answer is returned even if writing the rest fails.
 */
export function request(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    ca?: string;
    bodyDelayMs?: number;
    onRequestStarted?: () => void;
    timeoutMs?: number;
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const body = typeof options.body === 'string' ? Buffer.from(options.body) : options.body;
    const req = lib.request(url, {
      method: options.method ?? 'GET',
      headers: { ...(body ? { 'content-length': String(body.length) } : {}), ...options.headers },
      agent: false,
      timeout: options.timeoutMs ?? 20_000,
      ...(options.ca ? { ca: options.ca } : {}),
    });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`No answer from ${url} within the timeout`)));
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    if (body && options.bodyDelayMs !== undefined) {
      req.write(body.subarray(0, Math.floor(body.length / 2)));
      options.onRequestStarted?.();
      setTimeout(() => req.end(body.subarray(Math.floor(body.length / 2))), options.bodyDelayMs);
    } else {
      req.end(body);
    }
  });
}
