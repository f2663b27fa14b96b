import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { ConfigError, StoreUnavailableError } from '../../src/errors.js';
import { openKmipStore } from '../../src/stores/kmip-store.js';
import { ObjectType, SecretDataType, Tag } from '../../src/stores/kmip/kmip-enums.js';
import { child, destroy, get, getAttributes, locate, readAttributes, readLocated, readSecretDataMaterial, readUniqueIdentifier, registerSecretData } from '../../src/stores/kmip/kmip-messages.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { PykmipServer } from '../../testbed/pykmip-server.js';
import { pykmipServerPerSuite } from '../support/pykmip-per-suite.js';
import { TestPki } from '../../testbed/test-pki.js';
import { makeKey, makeRealKey, runStoreConformance } from './store-conformance.js';

const deps = () => ({ logger: new MemoryLogger(), setup: true });

runStoreConformance('KmipStore on PyKMIP', async () => {
  const kmip = await PykmipServer.start();
  try {
    return { store: await openKmipStore(kmip.storeConfig(), deps()), cleanup: () => kmip.remove() };
  } catch (e) {
    await kmip.remove();
    throw e;
  }
});

describe('KmipStore on PyKMIP', () => {
  const kmip = pykmipServerPerSuite();

  it('keeps keys as Secret Data tagged with keyed hashes only: no email or fingerprint in any attribute or the server log', async () => {
    const logger = new MemoryLogger();
    const store = await openKmipStore(kmip().storeConfig(), { logger, setup: true });
    const key = makeKey('Plain.Text-Check@Example.com'.toLowerCase());
    await store.upsert(key);
    await store.upsert({ ...key, publicKey: `${key.publicKey}\n` });
    assert.deepEqual(await store.listByEmail(key.email), [{ ...key, publicKey: `${key.publicKey}\n` }]);
    await store.close();
    assert.ok(logger.entries.length > 0, 'the index key creation is logged');
    const logged = JSON.stringify(logger.entries);
    for (const secret of [key.email, key.fingerprint, key.privateKey.slice(60, 100), 'kmip test pass']) assert.equal(logged.includes(secret), false);

    const client = kmip().kmipClient();
    const ids = readLocated(await client.one(locate([]), 'Locate'));
    assert.ok(ids.length >= 2, 'the record and the index key');
    const attributes = (await client.batch(ids.map((id) => getAttributes(id, [])))).items.flatMap((i) => readAttributes(i.payload));
    const text = JSON.stringify(attributes, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v));
    assert.match(text, /ekm1-owner-/);
    assert.match(text, /ekm1-fp-/);
    for (const secret of [key.email, 'plain.text-check', 'example.com', key.fingerprint, key.fingerprint.toLowerCase(), key.fingerprint.slice(-16)]) {
      assert.equal(text.toLowerCase().includes(secret.toLowerCase()), false, `${secret} found in the attributes`);
    }
    const types = attributes.filter((a) => a.name === 'Object Type').map((a) => a.value.value);
    assert.ok(types.length >= 2 && types.every((t) => t === ObjectType.SecretData), 'every object is Secret Data');
    await client.close();
    const log = readFileSync(`${kmip().dir}/server.log`, 'utf8');
    assert.equal(log.includes(key.email), false);
    assert.equal(log.includes(key.privateKey.slice(60, 100)), false);
  });

  it('writes a record of a version without key id Names again with them when the same key is uploaded (as --import does)', async () => {
    const store = await openKmipStore(kmip().storeConfig(), deps());
    const client = kmip().kmipClient();
    const { key, subkeyLongId } = await makeRealKey('old-record@example.com');
    const before = new Set(readLocated(await client.one(locate([]), 'Locate')));
    await store.upsert(key);
    const [id] = readLocated(await client.one(locate([]), 'Locate')).filter((i) => !before.has(i));
    // Make it what the previous version wrote: the same record and tags, without the key id Names.
    const material = readSecretDataMaterial(await client.one(get(id!), 'Get')).material;
    const kept = readAttributes(await client.one(getAttributes(id!, []), 'Get Attributes')).filter(
      (a) => ['Object Group', 'Application Specific Information'].includes(a.name) || (a.name === 'Name' && child(a.value, Tag.NameValue, 'TextString').value.startsWith('ekm1-fp-')),
    );
    assert.equal(kept.length, 3);
    readUniqueIdentifier(await client.one(registerSecretData(SecretDataType.Password, material, kept), 'Register'));
    await client.one(destroy(id!), 'Destroy');
    await client.close();
    assert.deepEqual(await store.listByKeyId(subkeyLongId), []);
    assert.equal(await store.upsert(key), 'unchanged');
    assert.deepEqual(await store.listByKeyId(subkeyLongId), [key]);
    assert.deepEqual(await store.listByEmail(key.email), [key]);
    await store.close();
  });

  it('shares data between stores with their own connections (the index key lives on the server)', async () => {
    const a = await openKmipStore(kmip().storeConfig(), deps());
    const b = await openKmipStore(kmip().storeConfig({ key: kmip().keystore('keytool') }), deps());
    const key = makeKey('shared@example.com');
    assert.equal(await a.upsert(key), 'added');
    assert.deepEqual(await b.listByEmail(key.email), [key]);
    assert.equal(await b.upsert({ ...key, privateKey: `${key.privateKey}\n` }), 'updated');
    assert.deepEqual((await a.listByEmail(key.email)).map((k) => k.privateKey), [`${key.privateKey}\n`]);
    assert.equal(await a.delete(key.email, key.fingerprint), true);
    assert.deepEqual(await b.listByEmail(key.email), []);
    await a.close();
    await b.close();
  });

  it("exports more than one batch of large keys (answers over PyKMIP's default 1 MB limit)", async () => {
    const store = await openKmipStore(kmip().storeConfig(), deps());
    const big = (email: string) => {
      const key = makeKey(email);
      return { ...key, privateKey: key.privateKey.replace('\n\n', `\n\n${'A'.repeat(64)}\n`.repeat(1) + `${'QUJD'.repeat(16)}\n`.repeat(400)) };
    };
    const keys = Array.from({ length: 60 }, (_, i) => big(`export${i % 7}@example.com`));
    assert.ok(keys[0]!.privateKey.length > 25_000);
    for (const k of keys) await store.upsert(k);
    const exported = new Map<string, unknown>();
    for await (const k of store.all()) exported.set(k.fingerprint, k);
    for (const k of keys) assert.deepEqual(exported.get(k.fingerprint), k);
    assert.equal((await store.listByEmail('export0@example.com')).length, keys.filter((k) => k.email === 'export0@example.com').length);
    await store.close();
  });

  for (const flavour of ['openssl', 'openssl-legacy', 'keytool'] as const) {
    it(`connects with a client keystore made by ${flavour}`, async () => {
      const store = await openKmipStore(kmip().storeConfig({ key: kmip().keystore(flavour) }), deps());
      await store.probe();
      await store.close();
    });
  }

  it('trusts the server through a truststore made by openssl as well as keytool', async () => {
    const store = await openKmipStore(kmip().storeConfig({ truststore: kmip().truststore('openssl') }), deps());
    await store.probe();
    await store.close();
  });

  it('refuses a wrong keystore password at open, naming the file and not the password', async () => {
    const key = { ...kmip().keystore('openssl'), password: 'not-the-password' };
    await assert.rejects(openKmipStore(kmip().storeConfig({ key }), deps()), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /store\.kmip\.key\.file/);
      assert.match(e.message, /wrong password/);
      assert.ok(e.message.includes(key.file));
      assert.equal(e.message.includes('not-the-password'), false);
      return true;
    });
  });

  describe('operator errors in plain words', () => {
    const other = new TestPki('Some Other CA');
    after(() => other.remove());

    const rejectsWith = async (config: Parameters<typeof openKmipStore>[0], pattern: RegExp) => {
      const store = await openKmipStore(config, deps(), { pool: { connectTimeoutMs: 3000, requestTimeoutMs: 5000 } });
      const started = Date.now();
      await assert.rejects(store.probe(), (e: unknown) => {
        assert.ok(e instanceof StoreUnavailableError, String(e));
        assert.equal(e.status, 503);
        assert.match(e.details, pattern);
        assert.equal(e.details.includes('kmip test pass'), false);
        return true;
      });
      assert.ok(Date.now() - started < 6000);
      await store.close();
    };

    it('connection refused', async () => {
      const port = kmip().port === 1 ? 2 : 1;
      await rejectsWith(kmip().storeConfig({ port }), /Connection refused by the KMIP server at 127\.0\.0\.1:\d+/);
    });

    it('the EKM refuses a server certificate from a CA its truststore does not hold (a second CA)', async () => {
      // The client keystore carries the server's CA in its chain: that must not make the server trusted.
      await rejectsWith(
        kmip().storeConfig({ truststore: kmip().truststore('keytool', other) }),
        /TLS handshake failed: the EKM refused the certificate of the KMIP server at .*truststore\.file/,
      );
    });

    it('the server refuses a client certificate from a CA it does not trust', async () => {
      const stranger = other.issue('stranger', { clientAuth: true, serverAuth: false });
      await rejectsWith(
        kmip().storeConfig({ key: kmip().keystore('openssl', stranger, other) }),
        /TLS handshake failed: the KMIP server at 127\.0\.0\.1:\d+ (refused the connection|closed the connection during the handshake).*store\.kmip\.key\.file/,
      );
    });

    it('the server refuses a client certificate for servers only, with the clientAuth hint', async () => {
      const serverOnly = kmip().pki.issue('server-only', { serverAuth: true, clientAuth: false });
      await rejectsWith(
        kmip().storeConfig({ key: kmip().keystore('openssl', serverOnly) }),
        /TLS handshake failed: the KMIP server at .* refused the connection \(TLS alert: unsupported certificate\).*extendedKeyUsage=clientAuth/,
      );
    });

    it('the server accepts the handshake but not the identity: authentication not successful, with the clientAuth hint', async () => {
      const noUsage = kmip().pki.issue('no-extended-usage', { serverAuth: false, clientAuth: false });
      await rejectsWith(kmip().storeConfig({ key: kmip().keystore('openssl', noUsage) }), /Authentication Not Successful.*extendedKeyUsage=clientAuth/);
    });
  });
});
