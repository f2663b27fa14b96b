import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { ConfigError } from '../../src/errors.js';
import { loadKeystore, loadTruststore } from '../../src/tls/pkcs12.js';
import { TestPki, type Pkcs12Flavour } from '../../testbed/test-pki.js';

describe('PKCS#12 keystores', () => {
  const pki = new TestPki();
  after(() => pki.remove());
  const server = pki.issue('server', { hosts: ['localhost', '127.0.0.1'] });

  for (const flavour of ['openssl', 'openssl-legacy', 'keytool'] as Pkcs12Flavour[]) {
    it(`serves TLS from a keystore made by ${flavour}`, async () => {
      const file = pki.pkcs12(server, 's3cret pass', flavour);
      const identity = loadKeystore({ property: 'api.https.key.file', file, password: 's3cret pass' });
      const srv = tls.createServer({ ...identity }, (socket) => socket.end('hello'));
      srv.listen(0, '127.0.0.1');
      await once(srv, 'listening');
      const port = (srv.address() as { port: number }).port;
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.caCertPem });
      const [data] = (await once(socket, 'data')) as [Buffer];
      assert.equal(data.toString(), 'hello');
      assert.equal(socket.authorized, true);
      socket.destroy();
      srv.close();
    });

    it(`names the file, not the password, when the password of a ${flavour} keystore is wrong`, () => {
      const file = pki.pkcs12(server, 'right-password', flavour);
      assert.throws(
        () => loadKeystore({ property: 'api.https.key.file', file, password: 'wrong-password' }),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.message.includes(file) &&
          e.message.includes('wrong password') &&
          !e.message.includes('wrong-password') &&
          !e.message.includes('right-password'),
      );
    });
  }

  for (const flavour of ['openssl', 'keytool'] as const) {
    it(`reads the CA certificates of a truststore made by ${flavour}`, () => {
      const file = pki.truststore('trustpass', flavour);
      const cas = loadTruststore({ property: 'truststore.file', file, password: 'trustpass' });
      assert.equal(cas.length, 1);
      assert.match(cas[0]!, /BEGIN CERTIFICATE/);
      assert.equal(new X509Certificate(cas[0]!).subject, 'CN=EKM Test CA');
    });
  }

  it('refuses a file that is not a keystore, and a missing file, naming the property', () => {
    const file = join(pki.dir, 'garbage.p12');
    writeFileSync(file, 'not a keystore');
    assert.throws(() => loadKeystore({ property: 'store.kmip.key.file', file, password: '' }), /store\.kmip\.key\.file: .*garbage\.p12 is not a PKCS#12 keystore/);
    assert.throws(() => loadKeystore({ property: 'store.kmip.key.file', file: '/nonexistent.p12', password: '' }), /store\.kmip\.key\.file: cannot read \/nonexistent\.p12 \(ENOENT\)/);
  });
});
