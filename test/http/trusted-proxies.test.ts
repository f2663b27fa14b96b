import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.js';
import { AuthenticationError } from '../../src/errors.js';
import { createApp } from '../../src/http/app.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import type { Store } from '../../src/stores/store.js';
import { MemoryLogger } from '../support/memory-logger.js';

/** An app whose every token is refused (the refusal is audited), trusting `trusted` as proxies. */
async function serveApp(dir: string, store: Store, trusted: string | undefined) {
  const text = [
    'org.id=proxy-test',
    'api.https.enabled=false',
    'store.type=EncryptedDbStore',
    `store.db.folder=${join(dir, 'db')}`,
    'store.db.encryption.key=proxy test passphrase',
    'auth.type=OpenIDConnectAuthenticator',
    'auth.openid.issuer=https://issuer.invalid',
    'auth.openid.audience=test',
    'acl.type=SimpleAcl',
    ...(trusted === undefined ? [] : [`api.proxy.trusted=${trusted}`]),
  ].join('\n');
  const logger = new MemoryLogger();
  const refuse = async () => {
    throw new AuthenticationError('ERR_TOKEN_MISSING', 'Missing Authorization header');
  };
  const app = createApp({ config: parseConfig(text, join(dir, 'ekm.properties')), logger, store, authenticator: { authenticate: refuse }, acl: { authorizePrivateKeys: () => {} } });
  const server = http.createServer(app.callback()).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  /** GET /v1/keys/private with these headers; the access line and the audit entry of that request. */
  const fetchPrivate = async (headers: Record<string, string>) => {
    const answer = await fetch(`http://127.0.0.1:${port}/v1/keys/private`, { headers });
    assert.equal(answer.status, 401);
    const requestId = answer.headers.get('x-request-id');
    const mine = logger.entries.filter((e) => e.fields['requestId'] === requestId);
    const access = mine.find((e) => e.message === 'request');
    const audit = mine.find((e) => e.fields['audit'] !== undefined);
    assert.ok(access && audit, JSON.stringify(mine));
    return { access: access.fields, audit: audit.fields };
  };
  return { server, fetchPrivate };
}

describe('the client address in the audit trail and access log, in process', () => {
  let dir: string;
  let store: Store;
  let untrusting: Awaited<ReturnType<typeof serveApp>>;
  let trusting: Awaited<ReturnType<typeof serveApp>>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-proxy-'));
    store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder: join(dir, 'db'), encryptionKey: 'proxy test passphrase' }, { logger: new MemoryLogger() });
    untrusting = await serveApp(dir, store, undefined);
    trusting = await serveApp(dir, store, '10.0.0.0/8,127.0.0.1');
  });

  after(async () => {
    for (const s of [untrusting?.server, trusting?.server]) if (s) await new Promise((r) => s.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ignores spoofed X-Forwarded-For and X-Forwarded-Proto when no proxy is trusted', async () => {
    const { access, audit } = await untrusting.fetchPrivate({ 'X-Forwarded-For': '198.51.100.7', 'X-Forwarded-Proto': 'https' });
    assert.equal(audit['clientAddress'], '127.0.0.1');
    assert.equal(access['clientAddress'], '127.0.0.1');
    assert.equal(access['protocol'], 'http');
  });

  it('takes the client from X-Forwarded-For sent by a trusted proxy, skipping trusted hops', async () => {
    // The client's own (spoofed) entry comes first; the proxies appended the real one and their own.
    const { access, audit } = await trusting.fetchPrivate({ 'X-Forwarded-For': '192.0.2.66, 198.51.100.7, 10.20.30.40', 'X-Forwarded-Proto': 'https' });
    assert.equal(audit['clientAddress'], '198.51.100.7');
    assert.equal(access['clientAddress'], '198.51.100.7');
    assert.equal(access['protocol'], 'https');
  });

  it('uses the peer when a trusted proxy sends no X-Forwarded-For', async () => {
    const { audit } = await trusting.fetchPrivate({});
    assert.equal(audit['clientAddress'], '127.0.0.1');
  });
});
