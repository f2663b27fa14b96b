import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Pkcs12Flavour = 'openssl' | 'openssl-legacy' | 'keytool';

export interface IssuedCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * A throwaway certificate authority made with the real openssl (and keytool), for tests that need
 * real TLS: servers' certificates, client certificates, PKCS#12 keystores of every flavour.
 */
export class TestPki {
  readonly dir: string;
  readonly caCertFile: string;
  readonly caKeyFile: string;
  readonly caCertPem: string;
  private serial = 1;

  constructor(name = 'EKM Test CA') {
    this.dir = mkdtempSync(join(tmpdir(), 'ekm-pki-'));
    this.caKeyFile = join(this.dir, 'ca.key');
    this.caCertFile = join(this.dir, 'ca.crt');
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      this.caKeyFile,
      '-out',
      this.caCertFile,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    );
    this.caCertPem = readFileSync(this.caCertFile, 'utf8');
  }

  /** A certificate signed by this CA; `hosts` become subjectAltNames (DNS or IP). */
  issue(name: string, options: { hosts?: string[]; clientAuth?: boolean; serverAuth?: boolean } = {}): IssuedCert {
    const keyFile = join(this.dir, `${name}.key`);
    const csrFile = join(this.dir, `${name}.csr`);
    const certFile = join(this.dir, `${name}.crt`);
    const extFile = join(this.dir, `${name}.ext`);
    const usages = [options.serverAuth !== false ? 'serverAuth' : '', options.clientAuth ? 'clientAuth' : ''].filter(Boolean);
    const sans = (options.hosts ?? []).map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`));
    writeFileSync(
      extFile,
      [
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        usages.length ? `extendedKeyUsage=${usages.join(',')}` : '',
        sans.length ? `subjectAltName=${sans.join(',')}` : '',
      ]
        .filter(Boolean)
        .join('\n'),
    );
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${name}`);
    openssl(
      'x509',
      '-req',
      '-in',
      csrFile,
      '-CA',
      this.caCertFile,
      '-CAkey',
      this.caKeyFile,
      '-set_serial',
      String(this.serial++),
      '-days',
      '2',
      '-out',
      certFile,
      '-extfile',
      extFile,
    );
    return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
  }

  /** The certificate and key as a PKCS#12 keystore, made the way operators make them. */
  pkcs12(cert: IssuedCert, password: string, flavour: Pkcs12Flavour): string {
    const base = cert.certFile.replace(/\.crt$/, '');
    const file = `${base}-${flavour}-${this.serial++}.p12`;
    // keytool re-packs a keystore openssl made; the others are openssl's own, legacy or modern.
    const opensslOut = flavour === 'keytool' ? `${file}.source` : file;
    const legacy = flavour === 'openssl-legacy' ? ['-legacy'] : [];
    const source = ['-in', cert.certFile, '-inkey', cert.keyFile, '-certfile', this.caCertFile, '-name', 'ekm'];
    openssl('pkcs12', '-export', ...legacy, ...source, '-out', opensslOut, '-passout', `pass:${password}`);
    if (flavour === 'keytool') {
      const store = (role: 'src' | 'dest', path: string) => [`-${role}keystore`, path, `-${role}storetype`, 'PKCS12', `-${role}storepass`, password];
      execFileSync('keytool', ['-importkeystore', '-noprompt', ...store('src', opensslOut), ...store('dest', file)], { stdio: 'pipe' });
    }
    return file;
  }

  /** A truststore holding this CA's certificate, made by keytool or openssl. */
  truststore(password: string, flavour: 'openssl' | 'keytool'): string {
    const file = join(this.dir, `truststore-${flavour}.p12`);
    if (flavour === 'keytool') {
      execFileSync(
        'keytool',
        ['-importcert', '-noprompt', '-alias', 'ca', '-file', this.caCertFile, '-keystore', file, '-storetype', 'PKCS12', '-storepass', password],
        { stdio: 'pipe' },
      );
    } else {
      openssl('pkcs12', '-export', '-nokeys', '-in', this.caCertFile, '-out', file, '-passout', `pass:${password}`);
    }
    return file;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe' });
}
