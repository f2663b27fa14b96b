import pkcs11js from 'pkcs11js';
import { ConfigError } from '../../errors.js';
import { ckrName, openFailure, tokenNotInitialised, userPinNotSet } from './pkcs11-failure.js';

/** Handles asked for per C_FindObjects call when finding every match. */
const FIND_BATCH = 256;

/**
 * A logged-in read/write session on the module's one initialised token, opened after C_Initialize.
 *
 * Only one session: every PKCS#11 call of the process runs on the engine thread, one operation at a
 * time (pkcs11js's find, get and create are synchronous), so "one operation per session at a time"
 * holds without a pool, and no native call is ever in flight when recovery calls C_Finalize.
 */
export class TokenSession {
  private closed = false;

  private constructor(
    readonly lib: pkcs11js.PKCS11,
    readonly handle: pkcs11js.Handle,
    readonly slot: pkcs11js.Handle,
    /** The token label (not secret), for logs and operator messages. */
    readonly tokenLabel: string,
  ) {}

  /**
   * C_Initialize (with CKF_OS_LOCKING_OK: the module may be called from libuv threads), find the token,
   * open a R/W session and C_Login as the user. `lib` has the module loaded already.
   * Throws ConfigError for operator mistakes, StoreUnavailableError for outages.
   */
  static open(lib: pkcs11js.PKCS11, module: string, pin: string): TokenSession {
    try {
      lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      if (ckrName(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw openFailure('initialize', e, module);
    }
    try {
      const { slot, label } = selectToken(lib, module);
      let handle: pkcs11js.Handle;
      try {
        handle = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      } catch (e) {
        throw openFailure('open-session', e, module);
      }
      try {
        // PKCS#11 2.40 section 5.6 C_Login: the PIN is passed unchanged, so vendor forms such as
        // Fortanix's `file://<config>` reach the module as the operator wrote them.
        lib.C_Login(handle, pkcs11js.CKU_USER, pin);
      } catch (e) {
        if (ckrName(e) !== 'CKR_USER_ALREADY_LOGGED_IN') throw openFailure('login', e, module);
      }
      return new TokenSession(lib, handle, slot, label);
    } catch (e) {
      finalize(lib);
      throw e;
    }
  }

  /**
   * C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal: at most `max` handles, or every match
   * (in batches of FIND_BATCH) when `max` is not given.
   */
  find(template: pkcs11js.Template, max?: number): pkcs11js.Handle[] {
    const { lib, handle: s } = this;
    lib.C_FindObjectsInit(s, template);
    try {
      if (max !== undefined) return lib.C_FindObjects(s, max);
      const found: pkcs11js.Handle[] = [];
      for (;;) {
        const batch = lib.C_FindObjects(s, FIND_BATCH);
        found.push(...batch);
        if (batch.length < FIND_BATCH) return found;
      }
    } finally {
      lib.C_FindObjectsFinal(s);
    }
  }

  /** Logs out and C_Finalize: every handle of this session is invalid afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.lib.C_Logout(this.handle);
    } catch {
      // The token may be gone already (that is often why we close); C_Finalize below still runs.
    }
    finalize(this.lib);
  }
}

function finalize(lib: pkcs11js.PKCS11): void {
  try {
    lib.C_Finalize();
  } catch {
    // Not initialised or already finalised: nothing left to release.
  }
}

/**
 * The one initialised token of the module. The store has no token-label property, and several
 * tokens would make the choice a guess, so that is an operator error naming the labels found.
 */
function selectToken(lib: pkcs11js.PKCS11, module: string): { slot: pkcs11js.Handle; label: string } {
  let tokens: { slot: pkcs11js.Handle; info: pkcs11js.TokenInfo }[];
  try {
    tokens = lib.C_GetSlotList(true).map((slot) => ({ slot, info: lib.C_GetTokenInfo(slot) }));
  } catch (e) {
    throw openFailure('select-token', e, module);
  }
  const initialised = tokens.filter((t) => (t.info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0);
  const [only] = initialised;
  if (only === undefined) throw tokenNotInitialised(module);
  if (initialised.length > 1) {
    const labels = initialised.map((t) => JSON.stringify(t.info.label.trim())).join(', ');
    throw new ConfigError(`The PKCS#11 module ${module} offers several initialised tokens (${labels}); the EKM keeps its keys on exactly one, so expose only that one to it.`);
  }
  if ((only.info.flags & pkcs11js.CKF_USER_PIN_INITIALIZED) === 0) throw userPinNotSet();
  return { slot: only.slot, label: only.info.label.trim() };
}
