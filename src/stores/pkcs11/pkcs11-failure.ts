import { ConfigError, StoreUnavailableError } from '../../errors.js';

/**
 * The CKR_* name of a PKCS#11 failure, or undefined for anything else. pkcs11js reports the return
 * value as `CKR_NAME:number` in the message and does not always fill `code` (C_FindObjects throws a
 * plain Error), so the name is read from the text: it is the library's only stable identifier.
 */
export function ckrName(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  return /\b(CKR_[A-Z0-9_]+)\b/.exec(e.message)?.[1];
}

/** A short, secret-free description of a failure for error details and logs. */
export function describeFailure(e: unknown): string {
  const name = ckrName(e);
  if (name !== undefined) return name;
  if (e instanceof Error) return `${e.name}: ${e.message.split('\n')[0]}`;
  return 'unknown failure';
}

/** Where opening the token failed; decides the operator-facing wording. */
export type OpenStep = 'load' | 'initialize' | 'select-token' | 'open-session' | 'login';

/**
 * Turns a failure while opening the token into what an operator can act on: ConfigError for their
 * mistakes (wrong module, wrong PIN, token not initialised), StoreUnavailableError for outages.
 * The PIN never appears: messages name the property instead.
 */
export function openFailure(step: OpenStep, e: unknown, module: string): ConfigError | StoreUnavailableError {
  const name = ckrName(e);
  if (step === 'load') {
    return new ConfigError(
      `store.pkcs11.module: ${module} is not a PKCS#11 library (${describeFailure(e)}). Point it at the .so file from your HSM vendor, e.g. /usr/lib/softhsm/libsofthsm2.so for SoftHSM2.`,
    );
  }
  switch (name) {
    case 'CKR_PIN_INCORRECT':
      return new ConfigError(
        'store.pkcs11.pin was refused by the token (CKR_PIN_INCORRECT): set the user PIN of the token. Each wrong attempt counts towards locking the PIN.',
        { cause: e },
      );
    case 'CKR_PIN_LOCKED':
      return new ConfigError('The token has locked its user PIN after too many wrong attempts (CKR_PIN_LOCKED): the security officer must unlock or reset it.', { cause: e });
    case 'CKR_PIN_LEN_RANGE':
    case 'CKR_PIN_INVALID':
      return new ConfigError(`store.pkcs11.pin is not a PIN this token accepts (${name}): check its length and characters.`, { cause: e });
    case 'CKR_PIN_EXPIRED':
      return new ConfigError('The token says the user PIN has expired (CKR_PIN_EXPIRED): set a new one and update store.pkcs11.pin.', { cause: e });
    case 'CKR_USER_PIN_NOT_INITIALIZED':
      return userPinNotSet();
    case 'CKR_TOKEN_NOT_RECOGNIZED':
      return tokenNotInitialised(module);
    case 'CKR_TOKEN_NOT_PRESENT':
    case 'CKR_DEVICE_REMOVED':
      return new StoreUnavailableError(`The token is not present in its slot (${name})`, { cause: e });
    default:
      return new StoreUnavailableError(`PKCS#11 ${stepName(step)} failed: ${describeFailure(e)}`, { cause: e });
  }
}

export function tokenNotInitialised(module: string): ConfigError {
  return new ConfigError(
    `The PKCS#11 module ${module} offers no initialised token: initialise one first (SoftHSM2: softhsm2-util --init-token --free --label <label> --so-pin <so-pin> --pin <user-pin>; for SoftHSM2 also check that SOFTHSM2_CONF names the token directory).`,
  );
}

export function userPinNotSet(): ConfigError {
  return new ConfigError(
    "The token's user PIN has not been set (CKR_USER_PIN_NOT_INITIALIZED): the security officer must set it (C_InitPIN; SoftHSM2: softhsm2-util --init-token ... --pin <user-pin>), then put it in store.pkcs11.pin.",
  );
}

function stepName(step: OpenStep): string {
  return { load: 'loading the module', initialize: 'C_Initialize', 'select-token': 'token lookup', 'open-session': 'C_OpenSession', login: 'C_Login' }[step];
}
