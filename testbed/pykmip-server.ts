import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeystoreRef, KmipStoreConfig } from '../src/config/config.js';
import { KmipClient } from '../src/stores/kmip/kmip-client.js';
import { DEFAULT_POOL_OPTIONS } from '../src/stores/kmip/kmip-connection-pool.js';
import { loadKeystore, loadTruststore } from '../src/tls/pkcs12.js';
import { freePort } from './processes.js';
import { TestPki, type IssuedCert, type Pkcs12Flavour } from './test-pki.js';

/** The Debian package's interpreter and script (python3-pykmip); not whatever python3 is first on PATH. */
const PYTHON = '/usr/bin/python3';
const PYKMIP_SERVER = '/usr/bin/pykmip-server';
const START_TIMEOUT_MS = 20_000;
const KEYSTORE_PASSWORD = 'kmip test pass';

/**
 * A real PyKMIP server for tests: its own CA and certificates (made with openssl by TestPki), a fresh
 * small database in a temp dir (PyKMIP's Locate is linear in the objects stored), listening on a
 * free 127.0.0.1 port with mutual TLS. It runs in its own process group, which stop() kills whole
 * (the server's children outlive its main process).
 *
 *   const kmip = await PykmipServer.start();
 *   const config = kmip.storeConfig();          // store.kmip.* for a client it accepts
 *   await kmip.stop(); await kmip.start();      // an outage, same port and database
 *   await kmip.remove();
 */
export class PykmipServer {
  readonly host = '127.0.0.1';
  readonly dir: string;
  readonly pki: TestPki;
  /** A client certificate the server accepts (extendedKeyUsage=clientAuth, signed by the server's CA). */
  readonly client: IssuedCert;
  private child: ChildProcess | undefined;
  private readonly configFile: string;
  private readonly logFile: string;
  /** Keystores made so far (keytool is slow, and refuses to add a CA twice to one truststore). */
  private readonly files = new Map<string, string>();
  private readonly killOnExit = () => this.killGroup('SIGKILL');

  private constructor(readonly port: number) {
    this.dir = mkdtempSync(join(tmpdir(), 'ekm-pykmip-'));
    this.pki = new TestPki('EKM Test KMIP CA');
    const server = this.pki.issue('kmip-server', { hosts: ['127.0.0.1', 'localhost'] });
    this.client = this.pki.issue('ekm-kmip-client', { clientAuth: true, serverAuth: false });
    mkdirSync(join(this.dir, 'policies'));
    this.configFile = join(this.dir, 'server.conf');
    this.logFile = join(this.dir, 'server.log');
    writeFileSync(
      this.configFile,
      [
        '[server]',
        `hostname=${this.host}`,
        `port=${port}`,
        `certificate_path=${server.certFile}`,
        `key_path=${server.keyFile}`,
        `ca_path=${this.pki.caCertFile}`,
        'auth_suite=TLS1.2',
        'enable_tls_client_auth=True',
        `policy_path=${join(this.dir, 'policies')}`,
        `database_path=${join(this.dir, 'pykmip.db')}`,
        'logging_level=INFO',
        '',
      ].join('\n'),
    );
  }

  /** Makes the PKI and config and starts the server; resolves once it accepts connections. */
  static async start(): Promise<PykmipServer> {
    const server = new PykmipServer(await freePort());
    try {
      await server.start();
    } catch (e) {
      await server.remove();
      throw e;
    }
    return server;
  }

  /** (Re)starts the server process on the same port and database. */
  async start(): Promise<void> {
    if (this.child !== undefined) throw new Error('PyKMIP server already running');
    const child = spawn(PYTHON, [PYKMIP_SERVER, '-f', this.configFile, '-l', this.logFile], { detached: true, stdio: 'ignore' });
    this.child = child;
    process.on('exit', this.killOnExit);
    let exited = false;
    child.once('exit', () => (exited = true));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await accepts(this.host, this.port))) {
      if (exited || Date.now() > deadline) {
        await this.stop();
        throw new Error(`PyKMIP server did not start on port ${this.port}; log:\n${this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Kills the whole process group and waits for the main process to be gone. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      this.killGroup('SIGTERM');
      const timer = setTimeout(() => this.killGroup('SIGKILL', child.pid), 3000);
      await exited;
      clearTimeout(timer);
    }
    // Its threads and helper processes may outlive the main process.
    this.killGroup('SIGKILL', child.pid);
    process.removeListener('exit', this.killOnExit);
  }

  /** Freezes the server (SIGSTOP on its group): connections stay open, nothing answers. */
  pause(): void {
    this.signalGroup('SIGSTOP');
  }

  resume(): void {
    this.signalGroup('SIGCONT');
  }

  /** Stops the server and deletes its certificates, database and logs. */
  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
    this.pki.remove();
  }

  /** A client keystore for `cert` (default: the accepted client certificate) made by `flavour`. */
  keystore(flavour: Pkcs12Flavour = 'openssl', cert: IssuedCert = this.client, pki: TestPki = this.pki): KeystoreRef {
    const id = `${cert.certFile} ${flavour}`;
    const file = this.files.get(id) ?? pki.pkcs12(cert, KEYSTORE_PASSWORD, flavour);
    this.files.set(id, file);
    return { property: 'store.kmip.key.file', file, password: KEYSTORE_PASSWORD };
  }

  /** A truststore with the CA of `pki` (default: the one that signed the server's certificate). */
  truststore(flavour: 'openssl' | 'keytool' = 'keytool', pki: TestPki = this.pki): KeystoreRef {
    const id = `${pki.dir} truststore ${flavour}`;
    const file = this.files.get(id) ?? pki.truststore(KEYSTORE_PASSWORD, flavour);
    this.files.set(id, file);
    return { property: 'truststore.file', file, password: KEYSTORE_PASSWORD };
  }

  /** store.kmip.* for a client the server accepts, trusting the server's CA. */
  storeConfig(overrides: Partial<KmipStoreConfig> = {}): KmipStoreConfig {
    return { type: 'KmipStore', hostname: this.host, port: this.port, key: this.keystore(), truststore: this.truststore(), ...overrides };
  }

  /** The daemon's store.kmip.* and truststore.* properties for a client the server accepts. */
  properties(keyFlavour: Pkcs12Flavour = 'openssl', trustFlavour: 'openssl' | 'keytool' = 'keytool'): Record<string, string> {
    const key = this.keystore(keyFlavour);
    const trust = this.truststore(trustFlavour);
    return {
      'store.type': 'KmipStore',
      'store.kmip.hostname': this.host,
      'store.kmip.port': String(this.port),
      'store.kmip.key.file': key.file,
      'store.kmip.key.password': key.password,
      'truststore.file': trust.file,
      'truststore.password': trust.password,
    };
  }

  /** A raw KMIP client the server accepts, to look at what a store left there. */
  kmipClient(): KmipClient {
    const config = this.storeConfig();
    return new KmipClient({
      host: config.hostname,
      port: config.port,
      identity: loadKeystore(config.key),
      truststore: loadTruststore(config.truststore!),
      truststoreFile: config.truststore!.file,
      pool: DEFAULT_POOL_OPTIONS,
    });
  }

  /** The end of the server's log, for failure messages. */
  logTail(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').split('\n').slice(-30).join('\n') : '(no log)';
  }

  private killGroup(signal: NodeJS.Signals, pid = this.child?.pid): void {
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // ESRCH: the group is already gone.
    }
  }

  private signalGroup(signal: NodeJS.Signals): void {
    if (this.child?.pid === undefined) throw new Error('PyKMIP server is not running');
    this.killGroup(signal);
  }
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
