import cluster, { type Worker } from 'node:cluster';
import type { Pkcs11StoreConfig } from '../../config/config.js';
import type { Logger } from '../../logging/logger.js';
import type { Store } from '../store.js';
import { IPC_REPLY, IPC_REQUEST, type IpcReply, type IpcRequest, toWireError } from './engine-protocol.js';
import { Pkcs11Engine } from './pkcs11-engine.js';
import { Pkcs11Store } from '../pkcs11-store.js';

/** What the primary keeps from startPkcs11Host. */
export interface Pkcs11Host {
  /** The store for the primary's own use (e.g. a probe at start); workers use openStore as usual. */
  readonly store: Store;
  /** Stops serving workers and closes the token session; call after the workers have exited. */
  close(): Promise<void>;
}

const OPS = new Set(['probe', 'list', 'listByKeyId', 'upsert', 'delete', 'scanOpen', 'scanNext', 'scanClose']);

/**
 * Makes this cluster primary the one process that holds the PKCS#11 session, and serves the
 * workers' Pkcs11Store requests arriving as IPC messages. Call it before forking the workers.
 *
 * Why one owner: SoftHSM2 loses sight of objects another process wrote when it writes itself in
 * between (its token generation counter swallows the other process's increment), and concurrent
 * C_Login from several processes can fail; HSM vendors also count sessions. With one owner every
 * worker sees every write at once, and the PKCS#11 calls run on the owner's engine thread, not on
 * its event loop (which on Linux also accepts the workers' connections).
 * Throws ConfigError for operator mistakes (wrong module, PIN, token); an unreachable HSM is not
 * one: the host starts, answers 503 and connects when the HSM is back.
 */
export async function startPkcs11Host(config: Pkcs11StoreConfig, logger: Logger): Promise<Pkcs11Host> {
  if (!cluster.isPrimary) throw new TypeError('startPkcs11Host runs in the cluster primary');
  // The service starts while the HSM is down (requests get 503 until it is back); a wrong module,
  // PIN or token still stops it.
  const engine = await Pkcs11Engine.acquire(config, logger, { tolerateOutage: true });
  const onMessage = (worker: Worker, message: unknown) => {
    if (!isRequest(message)) return;
    const reply = (r: IpcReply) => {
      if (worker.isConnected()) worker.send(r);
    };
    const { id, request } = message;
    if (request.op === 'hello') {
      reply({ tag: IPC_REPLY, id, ok: true, value: null });
      return;
    }
    if (!OPS.has(request.op)) {
      reply({ tag: IPC_REPLY, id, ok: false, error: toWireError(new TypeError('unknown operation')) });
      return;
    }
    engine.call(request).then(
      (value) => reply({ tag: IPC_REPLY, id, ok: true, value }),
      (e: unknown) => reply({ tag: IPC_REPLY, id, ok: false, error: toWireError(e) }),
    );
  };
  cluster.on('message', onMessage);
  let closed = false;
  return {
    store: new Pkcs11Store(engine, async () => {}),
    close: async () => {
      if (closed) return;
      closed = true;
      cluster.off('message', onMessage);
      await engine.release();
    },
  };
}

function isRequest(m: unknown): m is IpcRequest {
  return typeof m === 'object' && m !== null && (m as { tag?: unknown }).tag === IPC_REQUEST && typeof (m as { id?: unknown }).id === 'number';
}
