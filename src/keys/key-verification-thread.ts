import { parentPort } from 'node:worker_threads';
import { KeyRejectedError } from '../errors.js';
import { loadOpenpgp } from './load-openpgp.js';
import { verifyPrivateKey, type ValidatedKey } from './private-key-policy.js';

/** A key to verify, as KeyVerificationPool posts it. */
export interface VerificationRequest {
  readonly id: number;
  readonly binary: Uint8Array;
  readonly email: string;
  /** The time to verify at, in ms since the epoch. */
  readonly now: number;
}

/**
 * The thread's answers: ready once OpenPGP.js is loaded (the deadline never counts the thread's
 * start), then one per request. An unexpected failure carries only the error's class name: the
 * message could quote key material.
 */
export type VerificationReply =
  | { readonly ready: true }
  | { readonly id: number; readonly key: ValidatedKey }
  | { readonly id: number; readonly rejected: { readonly message: string; readonly details: string } }
  | { readonly id: number; readonly failed: string };

/** The body of a key verification thread (KeyVerificationPool): verifyPrivateKey, one request at a time. */
if (parentPort !== null) {
  const port = parentPort;
  await loadOpenpgp();
  port.on('message', (request: VerificationRequest) => {
    void verifyPrivateKey(request.binary, request.email, new Date(request.now)).then(
      (key) => port.postMessage({ id: request.id, key } satisfies VerificationReply),
      (e: unknown) => {
        const reply: VerificationReply = e instanceof KeyRejectedError
          ? { id: request.id, rejected: { message: e.message, details: e.details } }
          : { id: request.id, failed: e instanceof Error ? e.name : typeof e };
        port.postMessage(reply);
      },
    );
  });
  port.postMessage({ ready: true } satisfies VerificationReply);
}
