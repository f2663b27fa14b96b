import { StoreUnavailableError } from '../../errors.js';
import { type EngineChannel, type EngineRequest, type EngineResult, IPC_REPLY, IPC_REQUEST, type IpcReply, type IpcRequest, fromWireError } from './engine-protocol.js';

/** Longer than the engine's own timeout, so the engine's clearer 503 wins. */
const REQUEST_TIMEOUT_MS = 35_000;
const HELLO_TIMEOUT_MS = 10_000;
let nextId = 1;

/**
 * A cluster worker's way to the PKCS#11 engine: requests go to the primary over the cluster IPC
 * channel (process.send), which startPkcs11Host serves.
 */
export class HostChannel implements EngineChannel {
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly onMessage = (m: unknown) => {
    if (typeof m !== 'object' || m === null || (m as { tag?: unknown }).tag !== IPC_REPLY) return;
    const reply = m as IpcReply;
    const p = this.pending.get(reply.id);
    if (p === undefined) return;
    this.pending.delete(reply.id);
    clearTimeout(p.timer);
    if (reply.ok) p.resolve(reply.value);
    else p.reject(fromWireError(reply.error));
  };

  private constructor() {
    process.on('message', this.onMessage);
  }

  /** Connects and checks that the primary serves PKCS#11 requests (it called startPkcs11Host). */
  static async connect(): Promise<HostChannel> {
    if (typeof process.send !== 'function') throw new TypeError('HostChannel runs in a cluster worker');
    const channel = new HostChannel();
    try {
      await channel.send({ op: 'hello' }, HELLO_TIMEOUT_MS);
    } catch (e) {
      channel.close();
      throw new StoreUnavailableError('The primary process does not serve the PKCS#11 store (startPkcs11Host was not called before forking)', { cause: e });
    }
    return channel;
  }

  call<R extends EngineRequest>(request: R): Promise<EngineResult<R>> {
    return this.send(request, REQUEST_TIMEOUT_MS) as Promise<EngineResult<R>>;
  }

  close(): void {
    process.off('message', this.onMessage);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new StoreUnavailableError('The PKCS#11 store is closed'));
    }
    this.pending.clear();
  }

  private send(request: IpcRequest['request'], timeoutMs: number): Promise<unknown> {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new StoreUnavailableError(`The primary process did not answer within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      const message: IpcRequest = { tag: IPC_REQUEST, id, request };
      process.send!(message, undefined, undefined, (e) => {
        if (!e) return;
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new StoreUnavailableError('The primary process cannot be reached'));
      });
    });
  }
}
