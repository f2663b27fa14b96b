import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.js';
import { AuthenticationError, ConfigError } from '../../src/errors.js';
import { configText, startInProcessApp } from '../support/in-process-app.js';

const FIREFOX_ORIGIN = 'moz-extension://39553fca-76d4-4791-bf00-b4dfede6fd45';
const CHROME_ORIGIN = 'chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc';

describe('routing and CORS of the app, in process', () => {
  let base: string;
  let close: () => Promise<void>;

  before(async () => {
    // Routing is under test: every token is refused, so a known private-key route answers 401 and an unknown one 404.
    const refuse = async () => {
      throw new AuthenticationError('ERR_TOKEN_MISSING', 'Missing Authorization header');
    };
    ({ base, close } = await startInProcessApp({ authenticator: { authenticate: refuse }, properties: [`api.cors.origins=${CHROME_ORIGIN},moz-extension://*`] }));
  });

  after(async () => {
    await close();
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
    const dir = mkdtempSync(join(tmpdir(), 'ekm-routes-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
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
