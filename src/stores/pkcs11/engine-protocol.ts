import { ConfigError, FingerprintConflictError, KeyLimitError, StoreUnavailableError } from '../../errors.js';
import type { OwnerKeyLimits } from '../owner-key-limits.js';
import type { StoredKey, UpsertResult } from '../store.js';

/**
 * The operations the PKCS#11 engine serves, the same between the engine thread and its owner and
 * between cluster workers and the primary. Plain JSON: it crosses worker IPC.
 */
export type EngineRequest =
  | { readonly op: 'probe' }
  | { readonly op: 'list'; readonly email: string }
  | { readonly op: 'listByKeyId'; readonly id: string }
  /** `keyIds`: what the key answers to (src/keys/key-ids.ts), computed outside the engine thread. */
  | { readonly op: 'upsert'; readonly key: StoredKey; readonly keyIds: readonly string[]; readonly limits?: OwnerKeyLimits }
  | { readonly op: 'delete'; readonly email: string; readonly fingerprint: string }
  | { readonly op: 'scanOpen' }
  | { readonly op: 'scanNext'; readonly cursor: string }
  | { readonly op: 'scanClose'; readonly cursor: string };

interface EngineResults {
  probe: null;
  list: StoredKey[];
  listByKeyId: StoredKey[];
  upsert: UpsertResult;
  delete: boolean;
  scanOpen: string;
  scanNext: StoredKey[];
  scanClose: null;
}

export type EngineResult<R extends EngineRequest> = EngineResults[R['op']];

/** Where requests go: the engine thread in this process, or the primary over cluster IPC. */
export interface EngineChannel {
  call<R extends EngineRequest>(request: R): Promise<EngineResult<R>>;
}

/** An error as it crosses a thread or process boundary: its class by name, never a stack or a cause. */
export interface WireError {
  readonly kind: 'unavailable' | 'conflict' | 'limit' | 'config' | 'internal';
  readonly message: string;
  readonly details: string;
  /** The stable code, for the kinds that have more than one. */
  readonly code?: string;
}

export type EngineReply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: WireError };

export function toWireError(e: unknown): WireError {
  if (e instanceof FingerprintConflictError) return { kind: 'conflict', message: e.message, details: e.details };
  if (e instanceof KeyLimitError) return { kind: 'limit', message: e.message, details: e.details, code: e.code };
  if (e instanceof StoreUnavailableError) return { kind: 'unavailable', message: e.message, details: e.details };
  if (e instanceof ConfigError) return { kind: 'config', message: e.message, details: '' };
  // A bug, not an outage: the receiver turns it into a 500 with a fixed message.
  return { kind: 'internal', message: e instanceof Error ? e.name : 'unknown', details: '' };
}

export function fromWireError(w: WireError): Error {
  switch (w.kind) {
    case 'conflict':
      return new FingerprintConflictError();
    case 'limit':
      return new KeyLimitError(w.code === 'ERR_KEY_BYTES_LIMIT' ? 'ERR_KEY_BYTES_LIMIT' : 'ERR_KEY_COUNT_LIMIT', w.message, w.details);
    case 'unavailable':
      return new StoreUnavailableError(w.details);
    case 'config':
      return new ConfigError(w.message);
    case 'internal':
      return new Error(`The PKCS#11 engine failed unexpectedly (${w.message})`);
  }
}

/** A cluster worker's request to the primary; `hello` checks that the primary hosts the engine. */
export interface IpcRequest { readonly tag: typeof IPC_REQUEST; readonly id: number; readonly request: EngineRequest | { readonly op: 'hello' } }
export type IpcReply = { readonly tag: typeof IPC_REPLY } & EngineReply;

/** Tags on cluster IPC messages, so they never mix with the lead's own worker messages. */
export const IPC_REQUEST = 'ekm.pkcs11.request';
export const IPC_REPLY = 'ekm.pkcs11.reply';
