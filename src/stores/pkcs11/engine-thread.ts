import { parentPort, workerData } from 'node:worker_threads';
import pkcs11js from 'pkcs11js';
import { openFailure } from './pkcs11-failure.js';
import { type EngineReply, type EngineRequest, toWireError } from './engine-protocol.js';
import { type EngineLog, TokenRecordStore } from './token-record-store.js';

/**
 * The engine thread: the only place in the process that calls the PKCS#11 module. pkcs11js's
 * find, get and create are synchronous (a find is linear in the token's objects on SoftHSM2),
 * so they run here, off the event loop that accepts connections and talks to workers.
 */

/** What the owner sends: a request to serve, or the order to close. */
export type ToEngine = { readonly id: number; readonly request: EngineRequest } | { readonly close: true };
/** What the engine sends back. */
export type FromEngine =
  | { readonly type: 'ready'; readonly tokenLabel: string }
  | { readonly type: 'failed'; readonly error: ReturnType<typeof toWireError> }
  | { readonly type: 'log'; readonly level: 'info' | 'warn' | 'error'; readonly message: string; readonly fields: Readonly<Record<string, string | number>> }
  | { readonly type: 'reply'; readonly reply: EngineReply }
  | { readonly type: 'closed' };

export interface EngineThreadData {
  readonly module: string;
  readonly pin: string;
  /** Start even when the HSM is unreachable (serve 503 until it is back); operator mistakes still fail. */
  readonly tolerateOutage: boolean;
}

const port = parentPort;
if (port === null) throw new TypeError('engine-thread.js runs as a worker thread only');
const { module, pin, tolerateOutage } = workerData as EngineThreadData;
const post = (m: FromEngine) => port.postMessage(m);
const log: EngineLog = (level, message, fields = {}) => post({ type: 'log', level, message, fields });

const lib = new pkcs11js.PKCS11();
let store: TokenRecordStore | undefined;
try {
  try {
    lib.load(module);
  } catch (e) {
    throw openFailure('load', e, module);
  }
  store = TokenRecordStore.open(lib, module, pin, log, tolerateOutage);
  post({ type: 'ready', tokenLabel: store.tokenLabel });
} catch (e) {
  post({ type: 'failed', error: toWireError(e) });
}

port.on('message', (m: ToEngine) => {
  if ('close' in m) {
    store?.close();
    post({ type: 'closed' });
    port.close();
    return;
  }
  if (store === undefined) return;
  try {
    post({ type: 'reply', reply: { id: m.id, ok: true, value: serve(store, m.request) } });
  } catch (e) {
    post({ type: 'reply', reply: { id: m.id, ok: false, error: toWireError(e) } });
  }
});

function serve(s: TokenRecordStore, r: EngineRequest): unknown {
  switch (r.op) {
    case 'probe':
      s.probe();
      return null;
    case 'list':
      return s.list(r.email);
    case 'listByKeyId':
      return s.listByKeyId(r.id);
    case 'upsert':
      return s.upsert(r.key, r.keyIds, r.limits);
    case 'delete':
      return s.delete(r.email, r.fingerprint);
    case 'scanOpen':
      return s.scanOpen();
    case 'scanNext':
      return s.scanNext(r.cursor);
    case 'scanClose':
      s.scanClose(r.cursor);
      return null;
  }
}
