import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load-config.js';
import { AuthenticationError } from '../../src/errors.js';
import { createApp } from '../../src/http/app.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import type { Store } from '../../src/stores/store.js';
import { MemoryLogger } from './memory-logger.js';

/** A config for an in-process app over an EncryptedDbStore in `folder` (passphrase `routes test passphrase`). */
export function configText(folder: string, extra: string[] = []): string {
  return [
    'org.id=routes-test',
    'api.https.enabled=false',
    'store.type=EncryptedDbStore',
    `store.db.folder=${folder}`,
    'store.db.encryption.key=routes test passphrase',
    'auth.type=OpenIDConnectAuthenticator',
    'auth.openid.issuer=https://issuer.invalid',
    'auth.openid.audience=test',
    'acl.type=SimpleAcl',
    ...extra,
  ].join('\n');
}

/**
 * The app on 127.0.0.1 over a real EncryptedDbStore in a temp dir, with `extra` config lines. Every
 * token is refused, so a known private-key route answers 401 and an unknown one 404.
 */
export async function startInProcessApp(extra: string[] = []): Promise<{ store: Store; base: string; close: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'ekm-routes-'));
  const config = parseConfig(configText(join(dir, 'db'), extra), join(dir, 'ekm.properties'));
  const store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder: join(dir, 'db'), encryptionKey: 'routes test passphrase' }, { logger: new MemoryLogger() });
  const refuse = async () => {
    throw new AuthenticationError('ERR_TOKEN_MISSING', 'Missing Authorization header');
  };
  const app = createApp({ config, logger: new MemoryLogger(), store, authenticator: { authenticate: refuse }, acl: { authorizePrivateKeys: () => {} } });
  const server = http.createServer(app.callback()).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    store,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise((r) => server.close(r));
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
