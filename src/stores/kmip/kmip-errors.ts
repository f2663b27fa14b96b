import { resultReasonName } from './kmip-enums.js';

/**
 * The KMIP server could not be used: not reachable, TLS refused by either side, no answer in time,
 * an answer that is not KMIP, or a refusal of the EKM's identity. `message` is written for operators
 * and names no secret. KmipStore turns it into a StoreUnavailableError (503).
 */
export class KmipUnavailableError extends Error {
  /**
   * True when the request may have reached the server (so a write must not be repeated blindly);
   * false when it surely did not (the connection failed before the request was written).
   */
  readonly maybeSent: boolean;

  constructor(message: string, maybeSent: boolean, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KmipUnavailableError';
    this.maybeSent = maybeSent;
  }
}

/** The server answered an operation with Operation Failed (Result Status, KMIP 1.0 section 6.9). */
export class KmipOperationError extends Error {
  readonly reason: number | undefined;

  constructor(operation: string, reason: number | undefined, serverMessage: string | undefined) {
    super(`KMIP ${operation} failed: ${resultReasonName(reason)}${serverMessage ? ` (server says: ${serverMessage})` : ''}`);
    this.name = 'KmipOperationError';
    this.reason = reason;
  }
}
