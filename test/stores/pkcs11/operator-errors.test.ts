import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Pkcs11StoreConfig } from '../../../src/config/config.js';
import { ConfigError } from '../../../src/errors.js';
import { openPkcs11Store } from '../../../src/stores/pkcs11-store.js';
import { MemoryLogger } from '../../support/memory-logger.js';
import { SOFTHSM2_MODULE, type SoftHsmToken, createSoftHsmToken, useSoftHsmToken } from '../../../testbed/softhsm-token.js';

const logger = new MemoryLogger();
const tokens: SoftHsmToken[] = [];
const fresh = (options?: Parameters<typeof createSoftHsmToken>[0]) => {
  const token = createSoftHsmToken(options);
  tokens.push(token);
  useSoftHsmToken(token);
  return token;
};
const config = (over: Partial<Pkcs11StoreConfig>): Pkcs11StoreConfig => ({ type: 'Pkcs11Store', module: SOFTHSM2_MODULE, pin: 'unused-pin', ...over });

/** Opening must fail with a ConfigError whose one line matches, and never contains the PIN. */
async function refused(c: Pkcs11StoreConfig, pattern: RegExp): Promise<void> {
  await assert.rejects(openPkcs11Store(c, { logger }), (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.match(e.message, pattern);
    assert.equal(e.message.includes(c.pin), false, 'the PIN appears in the message');
    assert.equal(e.message.includes('\n'), false);
    return true;
  });
}

describe('Pkcs11Store operator errors', () => {
  after(() => {
    for (const t of tokens) t.remove();
    assert.equal(JSON.stringify(logger.entries).includes('secret-pin'), false);
  });

  it('names a module path that does not exist', async () => {
    await refused(config({ module: '/nonexistent/vendor-pkcs11.so', pin: 'secret-pin-1' }), /^store\.pkcs11\.module: \/nonexistent\/vendor-pkcs11\.so does not exist/);
  });

  it('names a file that is not a shared library', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-notlib-'));
    const file = join(dir, 'vendor-pkcs11.so');
    writeFileSync(file, 'not an ELF file\n');
    try {
      await refused(config({ module: file, pin: 'secret-pin-2' }), /^store\.pkcs11\.module: .*vendor-pkcs11\.so is not a PKCS#11 library/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a shared library that is not a PKCS#11 module', async () => {
    // A real shared library without C_GetFunctionList.
    const libc = ['/lib/x86_64-linux-gnu/libc.so.6', '/lib/aarch64-linux-gnu/libc.so.6'].find((f) => existsSync(f));
    assert.ok(libc !== undefined, 'no libc.so.6 found to try');
    await refused(config({ module: libc, pin: 'secret-pin-3' }), /is not a PKCS#11 library/);
  });

  it('says the PIN was refused, without printing it', async () => {
    fresh();
    await refused(config({ pin: 'secret-pin-wrong' }), /store\.pkcs11\.pin was refused by the token \(CKR_PIN_INCORRECT\)/);
  });

  it('says when the module has no initialised token', async () => {
    fresh({ initialise: false });
    await refused(config({ pin: 'secret-pin-4' }), /offers no initialised token: initialise one first/);
  });

  it("says when the token's user PIN was never set", async () => {
    fresh({ setUserPin: false });
    await refused(config({ pin: 'secret-pin-5' }), /user PIN has not been set/);
  });

  it('opens with the right PIN after all that', async () => {
    const token = fresh();
    const store = await openPkcs11Store(config({ pin: token.userPin }), { logger });
    await store.probe();
    await store.close();
  });
});
