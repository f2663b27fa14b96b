/** Messages a worker sends its primary over the cluster IPC channel. */
export type WorkerMessage =
  /** Asks for the configuration to serve with (answered with a `config` message). */
  | { readonly type: 'config-request' }
  /** Listening and serving. */
  | { readonly type: 'ready' }
  /** Could not start; the reason is an operator-facing sentence without secrets. */
  | { readonly type: 'fatal'; readonly reason: string; readonly configError: boolean };

/** Messages the primary sends a worker. */
export type PrimaryMessage =
  /**
   * The properties the primary validated, and the file they came from (for messages and relative
   * paths). Not the file itself: it may have changed since, and a reload keeps the running value
   * of the properties that need a restart.
   */
  | { readonly type: 'config'; readonly file: string; readonly properties: readonly (readonly [string, string])[] }
  /**
   * Stop: the listener closes after `drainMs`, and the worker exits once its connections are done
   * (see runWorker). `serviceStopping`: the whole service is going (SIGTERM), so /health fails from
   * now on; a worker replaced by a reload keeps answering it like the others, which stay.
   */
  | { readonly type: 'shutdown'; readonly drainMs: number; readonly serviceStopping: boolean };
