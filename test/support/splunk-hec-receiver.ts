import { once } from 'node:events';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One event as it reached the collector (HEC JSON event format). */
export interface HecEvent {
  readonly time?: string | number;
  readonly host?: string;
  readonly source?: string;
  readonly sourcetype?: string;
  readonly index?: string;
  readonly event: Record<string, unknown>;
}

/** Every request as received, including refused ones, for assertions on headers and bodies. */
export interface HecRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly status: number;
}

export interface SplunkHecReceiverOptions {
  /** The one valid HEC token. */
  readonly token: string;
  /** The server's certificate and key (PEM). */
  readonly cert: string;
  readonly key: string;
  /** Indexes the token may write to; an event naming another is refused (code 7). */
  readonly indexes?: readonly string[];
  /** The token has indexer acknowledgement on: a request without a channel is refused (code 10). */
  readonly acknowledgement?: boolean;
}

/**
 * A stand-in for Splunk's HTTP Event Collector over HTTPS, answering as Splunk does (HEC REST API,
 * "services/collector/event"; status codes and the `{"text","code"}` bodies of Splunk's
 * "Troubleshoot HTTP Event Collector" table):
 * - POST /services/collector/event, /services/collector/event/1.0 and /services/collector;
 * - `Authorization: Splunk <token>`: missing 401 code 2, malformed 401 code 3, wrong token 403 code 4;
 * - with indexer acknowledgement on, a channel (`X-Splunk-Request-Channel`, a GUID): missing 400 code
 *   10, not a GUID 400 code 11 (success then also carries an `ackId`);
 * - the body is one or more concatenated JSON event objects: none 400 code 5, not JSON 400 code 6,
 *   no `event` 400 code 12, a blank `event` 400 code 13, an index not allowed 400 code 7;
 *   all events of a request are refused if one is, with `invalid-event-number`;
 * - success 200 `{"text":"Success","code":0}`.
 */
export class SplunkHecReceiver {
  readonly events: HecEvent[] = [];
  readonly requests: HecRequest[] = [];
  /** Delay before every answer, to play a slow collector. */
  delayMs = 0;
  private readonly server: https.Server;
  private readonly options: SplunkHecReceiverOptions;
  private ackId = 0;

  private constructor(options: SplunkHecReceiverOptions) {
    this.options = options;
    this.server = https.createServer({ cert: options.cert, key: options.key }, (req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
  }

  static async start(options: SplunkHecReceiverOptions): Promise<SplunkHecReceiver> {
    const receiver = new SplunkHecReceiver(options);
    receiver.server.listen(0, '127.0.0.1');
    await once(receiver.server, 'listening');
    return receiver;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The base URL an operator would configure (`logger.splunk.url`). */
  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** Resolves with the events so far once `predicate` holds for them; rejects after `timeoutMs`. */
  async waitFor(predicate: (events: readonly HecEvent[]) => boolean, timeoutMs = 20_000): Promise<readonly HecEvent[]> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.events)) {
      if (Date.now() > deadline) throw new Error(`Splunk stand-in: condition not met within ${timeoutMs} ms (${this.events.length} events)`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.events;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    const path = (req.url ?? '').split('?')[0] ?? '';
    const answer = this.judge(req, path, body);
    this.requests.push({ method: req.method ?? '', path, headers: req.headers, body, status: answer.status });
    res.writeHead(answer.status, { 'Content-Type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(answer.body));
  }

  private judge(req: IncomingMessage, path: string, body: string): { status: number; body: Record<string, unknown> } {
    if (!['/services/collector/event', '/services/collector/event/1.0', '/services/collector'].includes(path)) {
      return { status: 404, body: { text: 'The requested URL was not found on this server.', code: 404 } };
    }
    if (req.method !== 'POST') return { status: 405, body: { text: 'Method Not Allowed', code: 405 } };
    const authorization = req.headers.authorization;
    if (authorization === undefined) return { status: 401, body: { text: 'Token is required', code: 2 } };
    const match = /^Splunk (\S+)$/.exec(authorization);
    if (match === null) return { status: 401, body: { text: 'Invalid authorization', code: 3 } };
    if (match[1] !== this.options.token) return { status: 403, body: { text: 'Invalid token', code: 4 } };
    if (this.options.acknowledgement) {
      const channel = req.headers['x-splunk-request-channel'] ?? new URL(req.url ?? '/', 'https://x').searchParams.get('channel');
      if (channel === undefined || channel === null || channel === '') return { status: 400, body: { text: 'Data channel is missing', code: 10 } };
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(String(channel))) {
        return { status: 400, body: { text: 'Invalid data channel', code: 11 } };
      }
    }
    if (body.trim() === '') return { status: 400, body: { text: 'No data', code: 5 } };
    const parsed = splitConcatenatedJson(body);
    const accepted: HecEvent[] = [];
    for (const [number, text] of parsed.entries()) {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return { status: 400, body: { text: 'Invalid data format', code: 6, 'invalid-event-number': number } };
      }
      if (typeof value !== 'object' || value === null) {
        return { status: 400, body: { text: 'Invalid data format', code: 6, 'invalid-event-number': number } };
      }
      const event = value as Record<string, unknown>;
      if (!('event' in event)) return { status: 400, body: { text: 'Event field is required', code: 12, 'invalid-event-number': number } };
      if (event.event === '' || event.event === null) {
        return { status: 400, body: { text: 'Event field cannot be blank', code: 13, 'invalid-event-number': number } };
      }
      if (typeof event.index === 'string' && !(this.options.indexes ?? ['main']).includes(event.index)) {
        return { status: 400, body: { text: 'Incorrect index', code: 7, 'invalid-event-number': number } };
      }
      accepted.push(event as unknown as HecEvent);
    }
    this.events.push(...accepted);
    return { status: 200, body: { text: 'Success', code: 0, ...(this.options.acknowledgement ? { ackId: this.ackId++ } : {}) } };
  }
}

/** Splits `{...}{...} {...}` into the JSON texts of its objects (HEC batches are concatenated, not an array). */
function splitConcatenatedJson(body: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === '}') {
      depth--;
      if (depth === 0) out.push(body.slice(start, i + 1));
    } else if (depth === 0 && !/\s/.test(c!)) {
      // Text outside any object: let JSON.parse report it as invalid.
      out.push(body.slice(i));
      break;
    }
  }
  if (depth > 0) out.push(body.slice(start));
  return out;
}
