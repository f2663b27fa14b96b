/**
 * The one error hierarchy of the EKM. Every error a client may see carries its HTTP status and a
 * stable string code; the error middleware turns it into `{"code": status, "message", "details"}`.
 * Messages and details are written for humans and never contain key material, tokens or passwords.
 */
export class EkmError extends Error {
  /** HTTP status answered when this error reaches a client. */
  readonly status: number;
  /** Stable machine-readable code, e.g. `ERR_TOKEN_EXPIRED`. Never match on `message`. */
  readonly code: string;
  /** Extra human-readable context; may be empty, never a secret. */
  readonly details: string;
  /** Seconds after which a retry may succeed, answered as `Retry-After` (RFC 9110, section 10.2.3); 503s of a passing overload only. */
  readonly retryAfterSeconds: number | undefined;

  constructor(status: number, code: string, message: string, details = '', options?: ErrorOptions & { retryAfterSeconds?: number }) {
    super(message, options);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** 400: the request body or a parameter is not acceptable. */
export class BadRequestError extends EkmError {
  constructor(message: string, details = '', code = 'ERR_BAD_REQUEST') {
    super(400, code, message, details);
  }
}

/** 400: the submitted private key does not meet what a stored key must be. */
export class KeyRejectedError extends EkmError {
  constructor(message: string, details = '') {
    super(400, 'ERR_KEY_REJECTED', message, details);
  }
}

/**
 * 503: this worker is already verifying as many keys as it takes at once (the queue is full, or the
 * key waited its turn too long). Passing load, not a bad key: the client may retry after a second.
 */
export class KeyVerificationBusyError extends EkmError {
  constructor(details: string) {
    super(503, 'ERR_KEY_VERIFICATION_BUSY', 'Too many keys are being verified at the moment; try again shortly', details, { retryAfterSeconds: 1 });
  }
}

/**
 * 400: storing this key would take its owner past a per-user limit (`api.keys.max.per.user`,
 * `api.keys.max.bytes.per.user`). The message is written for the apps to show to the user.
 */
export class KeyLimitError extends EkmError {
  constructor(code: 'ERR_KEY_COUNT_LIMIT' | 'ERR_KEY_BYTES_LIMIT', message: string, details = '') {
    super(400, code, message, details);
  }
}

/** 401: the ID token is missing, malformed, expired or otherwise not acceptable. */
export class AuthenticationError extends EkmError {
  constructor(code: string, message: string, details = '') {
    super(401, code, message, details);
  }
}

/** 403: the authenticated user may not do this. */
export class ForbiddenError extends EkmError {
  constructor(message: string, details = '') {
    super(403, 'ERR_FORBIDDEN', message, details);
  }
}

/** 404: no such resource (also unknown paths). */
export class NotFoundError extends EkmError {
  constructor(message: string, details = '') {
    super(404, 'ERR_NOT_FOUND', message, details);
  }
}

/** 405: method not allowed, or client key upload refused by the admin-provisioned policy. */
export class MethodNotAllowedError extends EkmError {
  constructor(message: string, details = '', code = 'ERR_METHOD_NOT_ALLOWED') {
    super(405, code, message, details);
  }
}

/** 409: the fingerprint is already stored for another user. */
export class FingerprintConflictError extends EkmError {
  constructor() {
    super(409, 'ERR_FINGERPRINT_CONFLICT', 'This key is already registered to another user', '');
  }
}

/** 413: the request body is over the limit. */
export class PayloadTooLargeError extends EkmError {
  constructor(limitBytes: number) {
    super(413, 'ERR_PAYLOAD_TOO_LARGE', 'Request body is too large', `The limit is ${limitBytes} bytes`);
  }
}

/**
 * The client closed the connection before its request body arrived. Nobody reads the answer; it is
 * a debug entry (anyone can cause it, so it must not raise error-level alerts), never a 500.
 */
export class ClientAbortedError extends EkmError {
  constructor() {
    super(400, 'ERR_CLIENT_ABORTED', 'The client closed the connection before sending the whole request', '');
  }
}

/** 431: more header lines than the server accepts. */
export class HeaderFieldsTooLargeError extends EkmError {
  constructor(details: string) {
    super(431, 'ERR_HEADERS_TOO_LARGE', 'Request header fields too large', details);
  }
}

/** 415: the request body is not `application/json`. */
export class UnsupportedMediaTypeError extends EkmError {
  constructor(details = '') {
    super(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'Request body must be JSON (Content-Type: application/json)', details);
  }
}

/**
 * 503: the key store cannot be reached or read. Clients delete local keys the EKM does not return,
 * so a store failure must never become an empty key list.
 */
export class StoreUnavailableError extends EkmError {
  constructor(details: string, options?: ErrorOptions) {
    super(503, 'ERR_STORE_UNAVAILABLE', 'Key store is unavailable', details, options);
  }
}

/**
 * 503: the store is up, but its key id index (lookups by fingerprint or long key id) is still being
 * filled for records written by an earlier version. A short list could miss a key, so no list is
 * answered; the store itself is healthy (its metrics must not report it down).
 */
export class KeyIdIndexBuildingError extends EkmError {
  constructor() {
    super(503, 'ERR_KEY_ID_INDEX_BUILDING', 'Key id lookups are not ready yet', 'The key id index is still being built; try again shortly', {
      retryAfterSeconds: 5,
    });
  }
}

/** Why a store can be read but not written. */
export type WriteFailureCause = 'read-only-filesystem' | 'permission' | 'disk-full';

/**
 * 503: the key store can be read but not written (its filesystem is read-only, the service may not
 * write its files, or its disk is full). Reads go on; writes come back by themselves once the cause
 * is gone. `details` names the cause and the path, never a key.
 */
export class StoreReadOnlyError extends EkmError {
  constructor(
    readonly reason: WriteFailureCause,
    details: string,
  ) {
    super(
      503,
      reason === 'disk-full' ? 'ERR_STORE_FULL' : 'ERR_STORE_READ_ONLY',
      reason === 'disk-full' ? 'Key store is full (no space left on its disk): keys can be read but not changed' : 'Key store is read-only: keys can be read but not changed',
      details,
    );
  }
}

/** 503: the identity provider's signing keys cannot be fetched, so no token can be judged. */
export class IdentityProviderUnavailableError extends EkmError {
  constructor(details: string, options?: ErrorOptions) {
    super(503, 'ERR_IDP_UNAVAILABLE', 'Identity provider signing keys are unavailable', details, options);
  }
}

/**
 * A configuration or start-up problem an operator must fix. Never reaches HTTP clients: the primary
 * prints `message` as one line and exits non-zero.
 */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}
