import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.js';
import { AuthenticationError, ConfigError } from '../../src/errors.js';
import { createApp } from '../../src/http/app.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import type { Store } from '../../src/stores/store.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { koaListener } from '../../src/http/koa-listener.js';

const FIREFOX_ORIGIN = 'moz-extension://39553fca-76d4-4791-bf00-b4dfede6fd45';
const CHROME_ORIGIN = 'chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc';

function configText(folder: string, extra: string[] = []): string {
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

describe('routing and CORS of the app, in process', () => {
  let dir: string;
  let store: Store;
  let server: http.Server;
  let base: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-routes-'));
    const text = configText(join(dir, 'db'), [`api.cors.origins=${CHROME_ORIGIN},moz-extension://*`]);
    const config = parseConfig(text, join(dir, 'ekm.properties'));
    store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder: join(dir, 'db'), encryptionKey: 'routes test passphrase' }, { logger: new MemoryLogger() });
    // Routing is under test: every token is refused, so a known private-key route answers 401 and an unknown one 404.
    const refuse = async () => {
      throw new AuthenticationError('ERR_TOKEN_MISSING', 'Missing Authorization header');
    };
    const app = createApp({ config, logger: new MemoryLogger(), store, authenticator: { authenticate: refuse }, acl: { authorizePrivateKeys: () => {} } });
    server = http.createServer(koaListener(app)).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise((r) => server.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, { headers });
    return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
  };

  it('serves the known routes behind any path prefix', async () => {
    for (const path of ['/v1/keys/private', '/keys/private', '/ekm/v1/keys/private', '/a/b/keys/private']) {
      assert.equal((await get(path)).status, 401, path);
    }
    for (const path of ['/v1/keys/public/alice@example.com', '/ekm/keys/public/alice@example.com', '/health', '/ekm/health']) {
      assert.equal((await get(path)).status, 200, path);
    }
  });

  it('answers 404 for an unknown API version, with or without a prefix, never the legacy route; paths are case-sensitive', async () => {
    for (const path of ['/V1/Keys/Private', '/v1/KEYS/private', '/Health', '/v2/keys/private', '/V2/keys/private', '/ekm/v2/keys/private', '/v3/keys/public/alice@example.com', '/v2/health/x']) {
      const answer = await get(path);
      assert.equal(answer.status, 404, path);
      assert.equal(answer.json.code, 404, path);
    }
  });

  it('allows every Firefox installation through moz-extension://*, the exact origins, and nothing else', async () => {
    const preflight = async (origin: string) => {
      const res = await fetch(`${base}/v1/keys/private`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'PUT' } });
      return res.headers.get('access-control-allow-origin');
    };
    assert.equal(await preflight(FIREFOX_ORIGIN), FIREFOX_ORIGIN);
    assert.equal(await preflight('moz-extension://0f4d1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b'), 'moz-extension://0f4d1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b');
    assert.equal(await preflight(CHROME_ORIGIN), CHROME_ORIGIN);
    for (const refused of ['https://evil.example', 'moz-extension://evil.example', 'moz-extension://39553fca-76d4-4791-bf00-b4dfede6fd45.evil', 'chrome-extension://other', 'null']) {
      assert.equal(await preflight(refused), null, refused);
    }
  });

  it('refuses every other wildcard or a path in api.cors.origins at start, naming the entry', () => {
    for (const bad of ['*', 'https://*.example.com', 'chrome-extension://*', 'https://mail.example.com/path', 'mail.example.com']) {
      assert.throws(
        () => parseConfig(configText(join(dir, 'db'), [`api.cors.origins=${bad}`]), join(dir, 'ekm.properties')),
        (e: unknown) => e instanceof ConfigError && e.message.includes(`[${bad}]`) && e.message.includes('api.cors.origins'),
        bad,
      );
    }
    parseConfig(configText(join(dir, 'db'), ['api.cors.origins=moz-extension://*,https://mail.example.com:8443']), join(dir, 'ekm.properties'));
  });
});
