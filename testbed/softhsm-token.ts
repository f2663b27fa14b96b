import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where Debian's softhsm2 package installs the module. */
export const SOFTHSM2_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

const INIT_WITHOUT_USER_PIN = `
const [binding, module, soPin, label] = process.argv.slice(1);
const pkcs11js = require(binding);
const p = new pkcs11js.PKCS11();
p.load(module);
p.C_Initialize();
const slot = p.C_GetSlotList(true).find((s) => (p.C_GetTokenInfo(s).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0);
p.C_InitToken(slot, soPin, label);
p.C_Finalize();
`;

/** A SoftHSM2 token in a private directory, reached by pointing SOFTHSM2_CONF at `confFile`. */
export interface SoftHsmToken {
  readonly dir: string;
  /** The token directory SoftHSM2 stores objects in; moving it away makes the token vanish. */
  readonly tokenDir: string;
  readonly confFile: string;
  readonly label: string;
  readonly userPin: string;
  readonly soPin: string;
  /** Deletes the directory. */
  remove(): void;
}

export interface SoftHsmTokenOptions {
  /** false: the directory has no initialised token at all (only SoftHSM2's free slot). */
  readonly initialise?: boolean;
  /** false: initialise the token with an SO PIN only, leaving the user PIN unset. */
  readonly setUserPin?: boolean;
}

/**
 * Creates a fresh SoftHSM2 token in a new private directory. The slot id changes when a token is
 * initialised, so callers find the token by label. SOFTHSM2_CONF is read by the module at
 * C_Initialize, so set it (see `useSoftHsmToken`) before opening a store.
 */
export function createSoftHsmToken(options: SoftHsmTokenOptions = {}): SoftHsmToken {
  if (!existsSync(SOFTHSM2_MODULE)) throw new Error(`${SOFTHSM2_MODULE} is missing: install the Debian package softhsm2`);
  const dir = mkdtempSync(join(tmpdir(), 'ekm-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  mkdirSync(tokenDir, { mode: 0o700 });
  const confFile = join(dir, 'softhsm2.conf');
  writeFileSync(confFile, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const token: SoftHsmToken = {
    dir,
    tokenDir,
    confFile,
    label: `ekm-test-${randomBytes(4).toString('hex')}`,
    userPin: randomBytes(6).toString('hex'),
    soPin: randomBytes(6).toString('hex'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  const env = { ...process.env, SOFTHSM2_CONF: confFile };
  if (options.initialise !== false && options.setUserPin !== false) {
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', token.label, '--so-pin', token.soPin, '--pin', token.userPin], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } else if (options.initialise !== false) {
    // softhsm2-util insists on a user PIN, so C_InitToken without C_InitPIN, in a child process: this
    // process must not hold the module initialised under another SOFTHSM2_CONF.
    execFileSync(
      process.execPath,
      ['-e', INIT_WITHOUT_USER_PIN, createRequire(import.meta.url).resolve('pkcs11js'), SOFTHSM2_MODULE, token.soPin, token.label],
      {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
  }
  return token;
}

/** Points this process (and processes and threads it starts afterwards) at the token. */
export function useSoftHsmToken(token: SoftHsmToken): void {
  process.env.SOFTHSM2_CONF = token.confFile;
}
