/** Messages a worker sends its primary over the cluster IPC channel. */
export type WorkerMessage =
  /** Listening and serving. */
  | { readonly type: 'ready' }
  /** Could not start; the reason is an operator-facing sentence without secrets. */
  | { readonly type: 'fatal'; readonly reason: string };

/** Messages the primary sends a worker. */
export interface PrimaryMessage { readonly type: 'shutdown' }
