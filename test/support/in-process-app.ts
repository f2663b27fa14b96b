import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Authenticator } from '../../src/auth/authenticator.js';
import { parseConfig } from '../../src/config/load-config.js';
import { createApp } from '../../src/http/app.js';
import type { DrainState } from '../../src/http/drain-state.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import type { Store } from '../../src/stores/store.js';
import { MemoryLogger } from './memory-logger.js';
import { propertiesText } from '../../testbed/ekm-daemon.js';
import { baseProperties, encryptedDbProperties } from './base-properties.js';
import { koaListener } from '../../src/http/koa-listener.js';

const PASSPHRASE = 'in-process app test passphrase';

/** The config of an in-process app over an EncryptedDbStore in `folder`, with `properties` added. */
export function configText(folder: string, properties: readonly string[] = []): string {
  return propertiesText({ ...baseProperties({ orgId: 'app-test' }), ...encryptedDbProperties(folder, PASSPHRASE) }) + properties.join('\n');
}

/** The Koa app on 127.0.0.1 with a real EncryptedDbStore in a temp dir, logging to memory. */
export interface InProcessApp {
  readonly base: string;
  readonly logger: MemoryLogger;
  /** The store the app was given (after `wrapStore`). */
  readonly store: Store;
  /** The store as opened, before `wrapStore`. */
  readonly inner: Store;
  readonly close: () => Promise<void>;
}

export async function startInProcessApp(options: {
  readonly properties?: readonly string[];
  readonly authenticator: Authenticator;
  readonly wrapStore?: (store: Store) => Store;
  readonly drain?: DrainState;
}): Promise<InProcessApp> {
  const dir = mkdtempSync(join(tmpdir(), 'ekm-app-'));
  const text = configText(join(dir, 'db'), options.properties);
  const logger = new MemoryLogger();
  const inner = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder: join(dir, 'db'), encryptionKey: PASSPHRASE }, { logger });
  const store = options.wrapStore?.(inner) ?? inner;
  const app = createApp({
    config: parseConfig(text, join(dir, 'ekm.properties')),
    logger,
    store,
    authenticator: options.authenticator,
    acl: { authorizePrivateKeys: () => {} },
    drain: options.drain,
  });
  const server = http.createServer(koaListener(app)).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    logger,
    store,
    inner,
    async close() {
      await new Promise((r) => server.close(r));
      await inner.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
