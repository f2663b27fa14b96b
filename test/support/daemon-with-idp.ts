import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EkmDaemon } from '../../testbed/ekm-daemon.js';
import { request, type Answer } from '../../testbed/http-client.js';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { TestPki } from '../../testbed/test-pki.js';
import { baseProperties, encryptedDbProperties } from './base-properties.js';

/**
 * The set-up of the end-to-end tests: the development OpenID provider over HTTPS (its certificate
 * from a test CA) and the real daemon trusting it, with 2 workers, plain HTTP (as behind the TLS
 * proxy), EncryptedDbStore in a temp dir and `org.domains=example.com`. A test's own properties
 * override these.
 */
export class DaemonWithIdp {
  private constructor(
    readonly pki: TestPki,
    readonly idp: OpenIdProvider,
    readonly ekm: EkmDaemon,
    private readonly dir: string,
  ) {}

  static async start(options: {
    readonly orgId: string;
    readonly audience: string;
    readonly properties?: Readonly<Record<string, string>>;
  }): Promise<DaemonWithIdp> {
    const pki = new TestPki();
    const dir = mkdtempSync(join(tmpdir(), 'ekm-e2e-'));
    let idp: OpenIdProvider | undefined;
    try {
      const idpCert = pki.issue('idp', { hosts: ['127.0.0.1'] });
      idp = await OpenIdProvider.start({ tls: { key: idpCert.keyPem, cert: idpCert.certPem }, audience: options.audience });
      const ekm = await EkmDaemon.start({
        env: { NODE_EXTRA_CA_CERTS: pki.caCertFile },
        properties: {
          ...baseProperties({ orgId: options.orgId, idp, audience: options.audience }),
          ...encryptedDbProperties(join(dir, 'db'), `${options.orgId} database passphrase`),
          'org.domains': 'example.com',
          'api.workers': '2',
          ...options.properties,
        },
      });
      return new DaemonWithIdp(pki, idp, ekm, dir);
    } catch (e) {
      await idp?.close();
      pki.remove();
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** An ID token of `email`, verified, from the development IdP. */
  token(email: string): Promise<string> {
    return this.idp.mint({ email, email_verified: true });
  }

  /** PUT /v1/keys/private as the token's owner. */
  putKey(token: string, privateKey: string, options: { readonly timeoutMs?: number } = {}): Promise<Answer> {
    return request(`${this.ekm.baseUrl}/v1/keys/private`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ privateKey }),
      ...options,
    });
  }

  async close(): Promise<void> {
    await this.ekm.stop('SIGKILL');
    await this.idp.close();
    this.pki.remove();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
