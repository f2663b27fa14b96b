import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { parseConfig } from '../../src/config/load-config.js';
import { createApp } from '../../src/http/app.js';
import { validatePrivateKey } from '../../src/keys/private-key-policy.js';
import { wkdHash } from '../../src/keys/wkd-hash.js';
import { openEncryptedDbStore } from '../../src/stores/encrypted-db-store.js';
import type { Store } from '../../src/stores/store.js';
import { request } from '../../testbed/http-client.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { makePrivateKeyWithUserIds } from '../support/openpgp-keys.js';
import { baseProperties, encryptedDbProperties } from '../support/base-properties.js';
import { propertiesText } from '../../testbed/ekm-daemon.js';
import { koaListener } from '../../src/http/koa-listener.js';

const PASSPHRASE = 'identity routes passphrase';

/** A GET's body as bytes (WKD answers binary keys). */
function bytes(url: string, headers: Record<string, string>): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(new Uint8Array(Buffer.concat(chunks))));
      })
      .on('error', reject);
  });
}

/** Lookalikes and break-outs of kate's local part. */
const HOSTILE_LOCAL_PARTS: [string, string][] = [
  ['U+212A KELVIN SIGN', '\u212Aate'],
  ['U+0130', 'kate\u0130'],
  ['a fullwidth k', '\uFF4Bate'],
  ['ESC', 'kate\x1b'],
  ['NUL', 'kate\0'],
  ['a quote', 'kate"'],
];

describe('the public-key route and the Web Key Directory under the one email rule', () => {
  let dir: string;
  let store: Store;
  let server: http.Server;
  let base: string;
  let kateFingerprint: string;
  let lookalikeFingerprint: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-identity-'));
    store = await openEncryptedDbStore({ type: 'EncryptedDbStore', folder: dir, encryptionKey: PASSPHRASE }, { logger: new MemoryLogger() });
    const kate = await validatePrivateKey((await makePrivateKeyWithUserIds(['Kate <kate@kelvin.test>'])).armored, 'kate@kelvin.test');
    await store.upsert(kate);
    kateFingerprint = kate.fingerprint;
    // What the old rule let in: a key whose only user id is a lookalike, stored as Kate's. Written
    // through the store directly, as a store upgraded from then holds it.
    const lookalike = await makePrivateKeyWithUserIds(['Kate <\u212Aate@kelvin.test>']);
    const key = await openpgp.readPrivateKey({ armoredKey: lookalike.armored });
    await store.upsert({ email: 'kate@kelvin.test', fingerprint: lookalike.fingerprint, privateKey: lookalike.armored, publicKey: key.toPublic().armor() });
    lookalikeFingerprint = lookalike.fingerprint;

    const config = parseConfig(
      propertiesText({ ...baseProperties({ orgId: 'identity-test' }), ...encryptedDbProperties(dir, PASSPHRASE), 'org.domains': 'kelvin.test' }),
      '/nonexistent/ekm.properties',
    );
    const unused = () => {
      throw new Error('public routes must not authenticate');
    };
    const app = createApp({ config, logger: new MemoryLogger(), store, authenticator: { authenticate: unused }, acl: { authorizePrivateKeys: unused } });
    server = http.createServer(koaListener(app)).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((r) => server?.close(r));
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const publicKeys = (email: string) => request(`${base}/v1/keys/public/${encodeURIComponent(email)}`);
  const wkd = (path: string, l: string, hash = wkdHash(l)) =>
    request(`${base}/.well-known/openpgpkey/${path}hu/${hash}?l=${encodeURIComponent(l)}`, { headers: { host: 'kelvin.test' } });

  it("serves Kate's public keys by her email in any ASCII case", async () => {
    for (const email of ['kate@kelvin.test', 'Kate@KELVIN.test']) {
      const answer = await publicKeys(email);
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.json.publicKeys.length, 2);
    }
  });

  for (const [name, local] of HOSTILE_LOCAL_PARTS) {
    it(`answers 400 for a public-key email with ${name}, and no WKD key for it`, async () => {
      const answer = await publicKeys(`${local}@kelvin.test`);
      assert.equal(answer.status, 400, answer.text);
      assert.deepEqual(Object.keys(answer.json).sort(), ['code', 'details', 'message']);
      assert.equal(answer.json.code, 400);
      assert.match(answer.json.details, /^The email contains /);
      assert.equal(answer.text.includes('PUBLIC KEY'), false);
      // GnuPG's hash of the lookalike, and the Unicode-lowercased one a JavaScript client computes.
      for (const hash of new Set([wkdHash(local), wkdHash(local.toLowerCase()), wkdHash(local.normalize('NFKC').toLowerCase())])) {
        assert.equal((await wkd('', local, hash)).status, 404, hash);
        assert.equal((await wkd('kelvin.test/', local, hash)).status, 404, hash);
      }
    });
  }

  it('answers 400 for a public-key domain with a lookalike', async () => {
    assert.equal((await publicKeys('kate@\u212Aelvin.test')).status, 400);
  });

  it("publishes in WKD only Kate's key, never a stored key whose user id is a lookalike of hers", async () => {
    for (const path of ['', 'kelvin.test/']) {
      assert.equal((await wkd(path, 'Kate')).status, 200);
      const served = await openpgp.readKeys({
        binaryKeys: await bytes(`${base}/.well-known/openpgpkey/${path}hu/${wkdHash('kate')}?l=Kate`, { host: 'kelvin.test' }),
      });
      assert.deepEqual(
        served.map((k) => k.getFingerprint().toUpperCase()),
        [kateFingerprint],
        `not ${lookalikeFingerprint}`,
      );
    }
  });

  it('answers 404 for a WKD path domain that is a lookalike of a served one', async () => {
    const answer = await request(`${base}/.well-known/openpgpkey/${encodeURIComponent('\u212Aelvin.test')}/hu/${wkdHash('kate')}?l=kate`);
    assert.equal(answer.status, 404, answer.text);
    const policy = await request(`${base}/.well-known/openpgpkey/${encodeURIComponent('\u212Aelvin.test')}/policy`);
    assert.equal(policy.status, 404, policy.text);
  });
});
