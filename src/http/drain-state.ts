/**
 * Whether this worker is going away. While it drains, /health answers 503 (a load balancer takes
 * the node out) and every response says `Connection: close`, so each kept-alive connection ends
 * after its next request instead of being closed under a request that may be on its way.
 */
export class DrainState {
  private active = false;

  get draining(): boolean {
    return this.active;
  }

  start(): void {
    this.active = true;
  }
}
