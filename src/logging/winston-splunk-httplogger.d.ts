// The package ships no types; this declares the part the Splunk output uses (version 3.x).
declare module 'winston-splunk-httplogger' {
  import type TransportStream from 'winston-transport';

  interface SplunkLoggerSettings {
    token: string;
    host?: string;
    port?: number;
    path?: string;
    protocol?: string;
    maxRetries?: number;
    source?: string;
    sourcetype?: string;
    index?: string;
    eventFormatter?: (message: { msg: unknown; meta?: Record<string, unknown> }, severity: string) => unknown;
  }

  /** One event for splunk-logging: `message` goes through the eventFormatter, `metadata` beside it. */
  interface SplunkContext {
    message: { msg: unknown; meta?: Record<string, unknown> };
    metadata?: Record<string, string | number>;
    severity?: string;
  }

  /** splunk-logging's Logger, which does the HTTP requests (through needle). */
  interface SplunkLogger {
    /** Its settings; `maxBatchCount` decides when send() flushes on its own. */
    config: { maxBatchCount: number };
    /** Queues an event (and flushes when the batch settings say so). */
    send(context: SplunkContext, callback?: (error: Error | null) => void): void;
    /** Posts every queued event in one request. */
    flush(callback: (error: Error | null) => void): void;
    /** Passed to needle on every request: TLS options, timeouts, agent. */
    requestOptions: Record<string, unknown>;
    /** Called on every failed request; the default console.logs the failed events themselves. */
    error: (error: Error, context: unknown) => void;
    /** Posts one request through needle; called as `this._post(...)` for every request. */
    _post: (options: Record<string, unknown>, callback: (error: Error | null, response: { statusCode?: number } | undefined, body: unknown) => void) => void;
  }

  class SplunkStreamEvent extends TransportStream {
    constructor(config: { level?: string; exitOnError?: boolean; splunk: SplunkLoggerSettings });
    server: SplunkLogger;
    /** Merged into each event's metadata (source, sourcetype, index, host). */
    defaultMetadata: Record<string, string>;
    override log(info: unknown, callback: () => void): void;
  }
  export = SplunkStreamEvent;
}
