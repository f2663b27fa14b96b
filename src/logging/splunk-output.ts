import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import os from 'node:os';
import type SplunkStreamEvent from 'winston-splunk-httplogger';
import type { LoggerConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { BoundedOutput, type LogInfo, type LossReport } from './bounded-output.js';

/** Splunk's JSON event endpoint (HTTP Event Collector REST API, "services/collector/event"). */
const EVENT_PATH = '/services/collector/event';
/** Requests in flight; each carries up to MAX_BATCH events. */
const CONCURRENCY = 2;
const MAX_BATCH = 100;
const TIMEOUT_MS = 5000;

export type SplunkSettings = NonNullable<LoggerConfig['splunk']>;

/** Where events are posted, taken apart from `logger.splunk.url`. */
export interface SplunkTarget {
  readonly protocol: 'http' | 'https';
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

/**
 * Checks `logger.splunk.*` the way the primary must before forking: a URL the transport can post to,
 * and a token that can be sent in a header. Messages name the property, never the token.
 */
export function validateSplunkSettings(settings: SplunkSettings): SplunkTarget {
  let url: URL;
  try {
    url = new URL(settings.url);
  } catch {
    // Not repeated when it may carry credentials (user:password@host).
    const given = settings.url.includes('@') ? 'the value' : `'${settings.url}'`;
    throw new ConfigError(`logger.splunk.url: ${given} is not a URL; expected the HTTP Event Collector base URL, e.g. https://splunk:8088`);
  }
  const shown = `${url.protocol}//${url.host}${url.pathname}`;
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`logger.splunk.url: '${shown}' must be an http:// or https:// URL (the HTTP Event Collector, e.g. https://splunk:8088)`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new ConfigError('logger.splunk.url must not contain a user name or password; the collector token goes in logger.splunk.token');
  }
  if (url.search !== '' || url.hash !== '') {
    throw new ConfigError(`logger.splunk.url: '${shown}' must not have a query or fragment`);
  }
  if (settings.token.trim() === '' || /[\s\x00-\x1f\x7f]/.test(settings.token)) {
    throw new ConfigError('logger.splunk.token must be a non-empty HTTP Event Collector token without spaces or control characters');
  }
  const protocol = url.protocol === 'https:' ? 'https' : 'http';
  const port = url.port === '' ? (protocol === 'https' ? 443 : 80) : Number(url.port);
  // A base URL gets the event endpoint appended; a URL that already names an endpoint is used as is
  // (Splunk Cloud documents full URLs such as https://http-inputs-<stack>.splunkcloud.com/services/collector/event).
  const base = url.pathname.replace(/\/+$/, '');
  const path = /\/services\/collector(\/event(\/1\.0)?)?$/.test(base) ? base : `${base}${EVENT_PATH}`;
  return { protocol, host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port, path };
}

/** Settings that work but weaken security, for the operator to see at start. */
export function splunkWarnings(settings: SplunkSettings, target: SplunkTarget): string[] {
  const warnings: string[] = [];
  if (settings.disableCertificateValidation && target.protocol === 'https') {
    warnings.push("logger.splunk.disable.certificate.validation=true: the Splunk server's certificate is not verified, so anyone on the path can read the log and the token. Use it only to debug logging.");
  }
  if (target.protocol === 'http' && !['localhost', '127.0.0.1', '::1'].includes(target.host)) {
    warnings.push('logger.splunk.url is http://: the HTTP Event Collector token and every log entry cross the network unencrypted. Use https://.');
  }
  return warnings;
}

/**
 * SplunkHttpLogger: each entry is posted to the HTTP Event Collector as one JSON event
 * (`Authorization: Splunk <token>`) carrying the same record as stdout, behind a BoundedOutput.
 * winston-splunk-httplogger's transport is built for its settings and its splunk-logging client,
 * but its log() posts one request per event; entries that queue up while requests are in flight
 * are instead sent together, as HEC allows (concatenated event objects in one POST).
 * The certificate is verified unless `logger.splunk.disable.certificate.validation=true`:
 * splunk-logging itself defaults to not verifying (its `strictSSL` is false), so this output turns
 * verification on explicitly.
 */
export function createSplunkOutput(settings: SplunkSettings, target: SplunkTarget, onLoss: (report: LossReport) => void): BoundedOutput {
  const verify = !settings.disableCertificateValidation;

  const transport = new (loadSplunkStreamEvent())({
    exitOnError: false, // failures are taken from server.error below, which also sees collector refusals
    splunk: {
      token: settings.token,
      protocol: target.protocol,
      host: target.host,
      port: target.port,
      path: target.path,
      maxRetries: 0,
      source: 'flowcrypt-ekm',
      // Splunk's built-in JSON source type: every field of the record becomes a searchable field.
      sourcetype: '_json',
      eventFormatter: (message) => message.meta ?? { message: message.msg },
    },
  });
  // winston-splunk-httplogger sends every event to index "winston-index" unless told otherwise, which
  // Splunk refuses (code 7, "Incorrect index") unless such an index exists: use the token's default index.
  delete transport.defaultMetadata.index;
  transport.defaultMetadata.host = os.hostname();
  // The transport sets 1 (flush on every send); batches are made below and flushed explicitly.
  transport.server.config.maxBatchCount = Number.MAX_SAFE_INTEGER;
  const agentOptions = { keepAlive: true, maxSockets: CONCURRENCY };
  Object.assign(transport.server.requestOptions, {
    // A token with indexer acknowledgement on refuses events without a channel (code 10, "Data
    // channel is missing"); one channel per process satisfies it (acks are not polled).
    headers: { 'X-Splunk-Request-Channel': randomUUID() },
    strictSSL: verify,
    agent: target.protocol === 'https' ? new https.Agent({ ...agentOptions, rejectUnauthorized: verify }) : new http.Agent(agentOptions),
    open_timeout: TIMEOUT_MS,
    response_timeout: TIMEOUT_MS,
    read_timeout: TIMEOUT_MS,
  });
  // splunk-logging reports a collector's refusal (`{"text":"Invalid token","code":4}`) only to
  // server.error, not to the transport's callback, and an answer that is not the collector's JSON
  // (a proxy's 502 page) to neither: both become failures here. server.error is called just before
  // the callback of the same request, synchronously. Its default console.logs the failed events.
  let failure: Error | undefined;
  transport.server.error = (error: Error) => {
    failure = error;
  };
  const post = transport.server._post;
  transport.server._post = (options, callback) => {
    post(options, (error, response, body) => {
      const status = response?.statusCode ?? 0;
      const splunkCode = typeof body === 'object' && body !== null ? (body as { code?: unknown }).code : undefined;
      if (!error && (status < 200 || status > 299) && splunkCode === undefined) {
        callback(new Error(`HTTP ${status} from the collector`), response, body);
      } else {
        callback(error, response, body);
      }
    });
  };
  return new BoundedOutput({
    output: 'SplunkHttpLogger',
    concurrency: CONCURRENCY,
    maxBatch: MAX_BATCH,
    lingerMs: 100,
    deliveryTimeoutMs: 3 * TIMEOUT_MS,
    onLoss,
    deliver: (batch: readonly LogInfo[], done) => {
      // As winston-splunk-httplogger's log() builds it, with the record's own time.
      for (const info of batch) {
        const time = typeof info.time === 'string' ? Date.parse(info.time) : Date.now();
        transport.server.send({
          message: { msg: info.message, meta: { ...info } },
          metadata: { ...transport.defaultMetadata, time },
          severity: String(info.level),
        });
      }
      transport.server.flush((error) => {
        const refusal = failure;
        failure = undefined;
        done(refusal ?? error);
      });
    },
  });
}

/** The HEC transport, loaded on first use: about a second of start-up otherwise, configured or not. CommonJS. */
function loadSplunkStreamEvent(): typeof SplunkStreamEvent {
  return createRequire(import.meta.url)('winston-splunk-httplogger') as typeof SplunkStreamEvent;
}
