/**
 * Whether this worker is going away. While it drains, every response says `Connection: close`, so
 * each kept-alive connection ends after its next request instead of being closed under a request
 * that may be on its way. When the whole service stops (not when a reload replaces the worker),
 * /health answers 503 too, so that a load balancer takes the node out before the port closes.
 */
export class DrainState {
  private active = false;
  private stopping = false;

  get draining(): boolean {
    return this.active;
  }

  /** The service is stopping: /health fails. */
  get serviceStopping(): boolean {
    return this.stopping;
  }

  start(serviceStopping: boolean): void {
    this.active = true;
    this.stopping ||= serviceStopping;
  }
}
