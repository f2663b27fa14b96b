import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { parseConfig } from '../../src/config/load-config.js';
import { StoreUnavailableError } from '../../src/errors.js';
import { createApp } from '../../src/http/app.js';
import { validatePrivateKey } from '../../src/keys/private-key-policy.js';
import { wkdHash } from '../../src/keys/wkd-hash.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import type { Store } from '../../src/stores/store.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';
import { propertiesText } from '../../testbed/ekm-daemon.js';
import { koaListener } from '../../src/http/koa-listener.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

async function generate(emails: (string | { name: string; email: string })[]): Promise<string> {
  const userIDs = emails.map((e) => (typeof e === 'string' ? { email: e } : e));
  const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs, format: 'armored' });
  return privateKey;
}

function configText(folder: string, extra: string): string {
  return (
    propertiesText({
      ...baseProperties({ orgId: 'wkd-test' }),
      ...encryptedDbProperties(folder, 'wkd test passphrase'),
      'api.cors.origins': 'chrome-extension://allowed',
    }) + extra
  );
}

/** Starts the app of this config on 127.0.0.1 (a real socket: the direct method reads the Host). */
async function serve(text: string, store: Store) {
  const config = parseConfig(text, '/nonexistent/ekm.properties');
  const unused = () => {
    throw new Error('WKD must not authenticate');
  };
  const app = createApp({ config, logger: new MemoryLogger(), store, authenticator: { authenticate: unused }, acl: { authorizePrivateKeys: unused } });
  const server = http.createServer(koaListener(app)).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  const request = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    new Promise<Answer>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, headers: { host: 'elsewhere.invalid', ...headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end();
    });
  return { request, close: () => new Promise((r) => server.close(r)) };
}

const hu = (local: string, domain?: string) =>
  `/.well-known/openpgpkey/${domain === undefined ? '' : `${domain}/`}hu/${wkdHash(local)}?l=${encodeURIComponent(local)}`;

async function readBinaryKeys(body: Buffer): Promise<openpgp.Key[]> {
  return openpgp.readKeys({ binaryKeys: new Uint8Array(body) });
}

describe('Web Key Directory', () => {
  let dir: string;
  let store: Store;
  let ekm: Awaited<ReturnType<typeof serve>>;
  const fingerprints: Record<string, string[]> = { alice: [], bob: [], collide: [], dan: [] };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-wkd-'));
    store = await openEncryptedDbStore(
      { type: 'EncryptedDbStore', folder: join(dir, 'db'), encryptionKey: 'wkd test passphrase' },
      { logger: new MemoryLogger() },
    );
    const put = async (who: string, email: string, armored: string) => {
      const key = await validatePrivateKey(armored, email);
      await store.upsert(key);
      fingerprints[who]!.push(key.fingerprint);
    };
    // Alice has two keys, one of which also names a private address the directory must not publish.
    await put('alice', 'alice@a.test', await generate(['alice@a.test', 'alice@personal.example']));
    await put('alice', 'alice@a.test', await generate(['alice@a.test']));
    await put('bob', 'bob@b.test', await generate([{ name: 'Bob', email: 'Bob@B.test' }]));
    // The same local part in another served domain: a different person.
    await put('collide', 'alice@b.test', await generate(['alice@b.test']));
    await put('dan', 'dan+tag@a.test', await generate(['dan+tag@a.test']));
    await store.upsert(await validatePrivateKey(await generate(['carol@outside.test']), 'carol@outside.test'));
    ekm = await serve(configText(join(dir, 'db'), 'org.domains=a.test,B.test'), store);
  });

  after(async () => {
    await ekm.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the advanced method with every key of the user, binary, only their address', async () => {
    const res = await ekm.request(hu('alice', 'a.test'), { host: 'openpgpkey.a.test' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.headers['access-control-allow-origin'], '*');
    assert.notEqual(res.body.subarray(0, 5).toString(), '-----', 'binary, not armored');
    const keys = await readBinaryKeys(res.body);
    assert.deepEqual(
      keys.map((k) => k.getFingerprint().toUpperCase()),
      fingerprints.alice,
    );
    for (const key of keys) assert.deepEqual(key.getUserIDs(), ['<alice@a.test>']);
    for (const key of keys) assert.equal(key.isPrivate(), false);
  });

  it('answers the direct method for the domain of the Host, and tells apart equal local parts by domain', async () => {
    const a = await ekm.request(hu('alice'), { host: 'a.test' });
    assert.equal(a.status, 200);
    assert.deepEqual(
      (await readBinaryKeys(a.body)).map((k) => k.getFingerprint().toUpperCase()),
      fingerprints.alice,
    );
    const b = await ekm.request(hu('alice'), { host: 'b.test:443' });
    assert.equal(b.status, 200);
    assert.deepEqual(
      (await readBinaryKeys(b.body)).map((k) => k.getFingerprint().toUpperCase()),
      fingerprints.collide,
    );
    const bAdvanced = await ekm.request(hu('alice', 'b.test'));
    assert.deepEqual(
      (await readBinaryKeys(bAdvanced.body)).map((k) => k.getFingerprint().toUpperCase()),
      fingerprints.collide,
    );
  });

  it('matches local parts case-insensitively, as GnuPG sends them (l unchanged, hash lowercased)', async () => {
    const res = await ekm.request(hu('Bob', 'b.test'));
    assert.equal(res.status, 200);
    assert.deepEqual(
      (await readBinaryKeys(res.body)).map((k) => k.getFingerprint().toUpperCase()),
      fingerprints.bob,
    );
  });

  it('takes a + in l literally, escaped (as GnuPG sends it) or not', async () => {
    for (const l of ['dan%2Btag', 'dan+tag']) {
      const res = await ekm.request(`/.well-known/openpgpkey/a.test/hu/${wkdHash('dan+tag')}?l=${l}`);
      assert.equal(res.status, 200, l);
      assert.deepEqual(
        (await readBinaryKeys(res.body)).map((k) => k.getFingerprint().toUpperCase()),
        fingerprints.dan,
        l,
      );
    }
  });

  it('answers HEAD, which the draft requires', async () => {
    const res = await ekm.request(hu('alice', 'a.test'), {}, 'HEAD');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.body.length, 0);
  });

  it('answers 404 for a user without keys, a domain it does not serve, a hash without l, or an l of another hash', async () => {
    for (const [path, host] of [
      [hu('nobody', 'a.test'), 'openpgpkey.a.test'],
      [hu('carol', 'outside.test'), 'openpgpkey.outside.test'],
      [hu('carol'), 'outside.test'],
      [`/.well-known/openpgpkey/a.test/hu/${wkdHash('alice')}`, 'openpgpkey.a.test'],
      [`/.well-known/openpgpkey/a.test/hu/${wkdHash('bob')}?l=alice`, 'openpgpkey.a.test'],
      ['/.well-known/openpgpkey/a.test/hu/not-a-hash?l=alice', 'openpgpkey.a.test'],
      [`/.well-known/openpgpkey/a.test/hu/${wkdHash('a@b')}?l=a%40b`, 'openpgpkey.a.test'],
    ] as const) {
      const res = await ekm.request(path, { host });
      assert.equal(res.status, 404, path);
      assert.equal(res.headers['access-control-allow-origin'], '*', path);
      const body = JSON.parse(res.body.toString()) as { code: number; message: string; details: string };
      assert.equal(body.code, 404);
      assert.equal(typeof body.message, 'string');
      assert.equal(typeof body.details, 'string');
    }
  });

  it('serves the policy files of served domains only', async () => {
    for (const [path, host] of [
      ['/.well-known/openpgpkey/a.test/policy', 'openpgpkey.a.test'],
      ['/.well-known/openpgpkey/policy', 'b.test'],
    ] as const) {
      const res = await ekm.request(path, { host });
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['access-control-allow-origin'], '*');
    }
    assert.equal((await ekm.request('/.well-known/openpgpkey/outside.test/policy')).status, 404);
    assert.equal((await ekm.request('/.well-known/openpgpkey/policy', { host: 'outside.test' })).status, 404);
  });

  it('works behind a reverse proxy path prefix', async () => {
    const res = await ekm.request(`/ekm${hu('alice', 'a.test')}`);
    assert.equal(res.status, 200);
  });

  it('allows every origin for WKD, including preflights, while the API keeps api.cors.origins', async () => {
    const origin = 'https://webmail.elsewhere.example';
    const wkd = await ekm.request(hu('alice', 'a.test'), { origin });
    assert.equal(wkd.headers['access-control-allow-origin'], '*');
    const preflight = await ekm.request(hu('alice', 'a.test'), { origin, 'access-control-request-method': 'GET' }, 'OPTIONS');
    assert.equal(preflight.headers['access-control-allow-origin'], '*');
    const api = await ekm.request('/v1/keys/public/alice@a.test', { origin });
    assert.equal(api.status, 200);
    assert.equal(api.headers['access-control-allow-origin'], undefined);
    const apiPreflight = await ekm.request('/v1/keys/private', { origin, 'access-control-request-method': 'PUT' }, 'OPTIONS');
    assert.equal(apiPreflight.headers['access-control-allow-origin'], undefined);
    const allowed = await ekm.request('/v1/keys/public/alice@a.test', { origin: 'chrome-extension://allowed' });
    assert.equal(allowed.headers['access-control-allow-origin'], 'chrome-extension://allowed');
  });

  it('answers 503, not 404, when the store cannot be read', async () => {
    const outage = async (): Promise<never> => {
      throw new StoreUnavailableError('test outage');
    };
    const broken: Store = {
      type: 'Broken',
      probe: outage,
      listByEmail: outage,
      listByKeyId: outage,
      upsert: outage,
      delete: outage,
      all: () => ({ [Symbol.asyncIterator]: () => ({ next: outage }) }),
      inventory: () => ({ [Symbol.asyncIterator]: () => ({ next: outage }) }),
      close: async () => {},
    };
    const down = await serve(configText(join(dir, 'db'), 'org.domains=a.test'), broken);
    try {
      assert.equal((await down.request(hu('alice', 'a.test'))).status, 503);
    } finally {
      await down.close();
    }
  });

  describe('with one org domain behind a proxy that does not pass the Host', () => {
    it('answers the direct method for that domain', async () => {
      const single = await serve(configText(join(dir, 'db'), 'org.domains=a.test'), store);
      try {
        const res = await single.request(hu('alice'), { host: 'ekm-backend.internal:32356' });
        assert.equal(res.status, 200);
        assert.equal((await single.request(hu('alice'), { host: 'b.test' })).status, 200, 'the only domain, whatever the Host');
        assert.equal((await single.request(hu('alice', 'b.test'))).status, 404);
      } finally {
        await single.close();
      }
    });
  });
});
