import { openPkcs11Store } from '../../../src/stores/pkcs11-store.js';
import type { StoredKey } from '../../../src/stores/store.js';
import { MemoryLogger } from '../../support/memory-logger.js';

/**
 * A separate process with its own engine on the same token, as the command line tools are while
 * the service runs: started with child_process.fork, it runs the store commands it is sent.
 * The test runner also loads this file as a test file; without EKM_TEST_STORE_PROCESS it does nothing.
 */
export type StoreProcessCommand =
  | { readonly id: number; readonly command: 'upsert'; readonly key: StoredKey }
  | { readonly id: number; readonly command: 'list'; readonly email: string }
  | { readonly id: number; readonly command: 'delete'; readonly email: string; readonly fingerprint: string }
  | { readonly id: number; readonly command: 'close' };

const settings = process.env.EKM_TEST_STORE_PROCESS;
if (settings !== undefined && process.send !== undefined) {
  const { module, pin } = JSON.parse(settings) as { module: string; pin: string };
  const store = await openPkcs11Store({ type: 'Pkcs11Store', module, pin }, { logger: new MemoryLogger() });
  process.on('message', (m: StoreProcessCommand) => {
    const run = (): Promise<unknown> => {
      switch (m.command) {
        case 'upsert':
          return store.upsert(m.key);
        case 'list':
          return store.listByEmail(m.email);
        case 'delete':
          return store.delete(m.email, m.fingerprint);
        case 'close':
          return store.close();
      }
    };
    run().then(
      (value) => process.send!({ id: m.id, ok: true, value }, undefined, undefined, () => m.command === 'close' && process.disconnect()),
      (e: unknown) => process.send!({ id: m.id, ok: false, error: `${(e as Error).name}: ${(e as { details?: string }).details ?? ''}` }),
    );
  });
  process.send({ ready: true });
}
