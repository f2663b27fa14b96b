import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import tls, { type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { KmipUnavailableError } from './kmip-errors.js';
import { ttlvItemLength } from './ttlv-codec.js';

/** Where and how to reach the KMIP server; built once per store from the config. */
export interface KmipEndpoint {
  readonly host: string;
  readonly port: number;
  /** The client identity (store.kmip.key.file), loaded once. */
  readonly secureContext: SecureContext;
  /** DER certificates one of which the server's verified chain must contain. */
  readonly trustAnchors: readonly Buffer[];
  /** Where the anchors come from, for operator messages, e.g. `truststore.file /etc/x.p12`. */
  readonly trustSource: string;
}

/** Far above any answer the EKM asks for (a page of keys is about 300 KB); stops a hostile length. */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/**
 * One mutually authenticated TLS connection to the KMIP server, carrying one request at a time
 * (KMIP 1.0 section 10: over TLS, a response follows each request on the same connection). A
 * connection that failed in any way (timeout, short or malformed answer, socket error) is destroyed
 * and never reused: a late answer must not be read as the answer to the next request.
 */
export class KmipConnection {
  private pending: { resolve: (b: Buffer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  private chunks: Buffer[] = [];
  private received = 0;
  /** Total length of the answer being read, once its 8-byte header has arrived. */
  private expected: number | undefined;
  private closed = false;
  private readonly closeListeners: (() => void)[] = [];

  private constructor(
    private readonly socket: TLSSocket,
    private readonly endpoint: KmipEndpoint,
  ) {
    socket.on('data', (data: Buffer) => this.onData(data));
    socket.on('error', (e: Error) => this.fail(describeSocketError(e, 'request', endpoint), true));
    socket.on('close', () => this.fail(new KmipUnavailableError(`The KMIP server at ${where(endpoint)} closed the connection`, true), false));
  }

  /** Connects and completes the TLS handshake within `timeoutMs`, verifying the server. */
  static open(endpoint: KmipEndpoint, timeoutMs: number): Promise<KmipConnection> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host: endpoint.host,
        port: endpoint.port,
        // SNI must be a host name (RFC 6066 section 3), never an address.
        servername: isIP(endpoint.host) === 0 ? endpoint.host : undefined,
        secureContext: endpoint.secureContext,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        checkServerIdentity: (host, cert) => checkServer(host, cert, endpoint),
      });
      let tcpConnected = false;
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        socket.destroy();
        reject(
          new KmipUnavailableError(
            tcpConnected
              ? `TLS handshake with the KMIP server at ${where(endpoint)} did not finish within ${timeoutMs} ms`
              : `No answer from the KMIP server at ${where(endpoint)} within ${timeoutMs} ms (connection timed out)`,
            false,
          ),
        );
      }, timeoutMs);
      socket.once('connect', () => (tcpConnected = true));
      // `on`, not `once`: a second 'error' without a listener would crash the process.
      const onError = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(describeSocketError(e, tcpConnected ? 'handshake' : 'connect', endpoint));
      };
      const onClose = () => onError(Object.assign(new Error('closed'), { code: 'ECONNRESET' }));
      socket.on('error', onError);
      socket.once('close', onClose);
      socket.once('secureConnect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.removeListener('close', onClose);
        // The connection's own handlers take over; this one stays as a no-op guard.
        resolve(new KmipConnection(socket, endpoint));
        socket.setNoDelay(true);
      });
    });
  }

  /** True while the connection may carry a request. */
  get usable(): boolean {
    return !this.closed && this.pending === undefined;
  }

  /** Called once when the connection ends for any reason. */
  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  /** Sends one encoded request in one write and resolves with the complete encoded response. */
  request(message: Buffer, timeoutMs: number): Promise<Buffer> {
    if (!this.usable) return Promise.reject(new KmipUnavailableError('The KMIP connection is not usable', false));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new KmipUnavailableError(`The KMIP server at ${where(this.endpoint)} did not answer within ${timeoutMs} ms`, true), true),
        timeoutMs,
      );
      this.pending = { resolve, reject, timer };
      this.socket.write(message);
    });
  }

  destroy(): void {
    this.fail(new KmipUnavailableError('The KMIP connection was closed by the EKM', false), true);
  }

  private onData(data: Buffer): void {
    if (this.pending === undefined) {
      this.fail(new KmipUnavailableError(`The KMIP server at ${where(this.endpoint)} sent data nobody asked for`, true), true);
      return;
    }
    this.chunks.push(data);
    this.received += data.length;
    if (this.expected === undefined) {
      this.expected = ttlvItemLength(this.chunks.length === 1 ? data : Buffer.concat(this.chunks));
      if (this.expected === undefined) return;
      if (this.expected > MAX_RESPONSE_BYTES) {
        this.fail(new KmipUnavailableError(`The KMIP server at ${where(this.endpoint)} announced a ${this.expected}-byte answer, over the ${MAX_RESPONSE_BYTES}-byte limit`, true), true);
        return;
      }
    }
    if (this.received < this.expected) return;
    if (this.received > this.expected) {
      this.fail(new KmipUnavailableError(`The KMIP server at ${where(this.endpoint)} sent more than one answer to one request`, true), true);
      return;
    }
    const { resolve, timer } = this.pending;
    const response = Buffer.concat(this.chunks);
    clearTimeout(timer);
    this.pending = undefined;
    this.chunks = [];
    this.received = 0;
    this.expected = undefined;
    resolve(response);
  }

  private fail(error: KmipUnavailableError, destroy: boolean): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending !== undefined) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    if (destroy) this.socket.destroy();
    if (!this.closed) {
      this.closed = true;
      for (const listener of this.closeListeners.splice(0)) listener();
    }
  }
}

function where(endpoint: KmipEndpoint): string {
  return `${endpoint.host}:${endpoint.port}`;
}

/**
 * The usual host name check, then: the verified chain must contain one of the configured trust
 * anchors. OpenSSL alone is not enough here: Node adds the CA certificates found in a client
 * PKCS#12 keystore to the context's trusted store, so without this check the CA that issued the
 * EKM's own certificate would be trusted to vouch for the server.
 */
function checkServer(host: string, cert: PeerCertificate, endpoint: KmipEndpoint): Error | undefined {
  const nameError = tls.checkServerIdentity(host, cert);
  if (nameError !== undefined) return nameError;
  const seen = new Set<PeerCertificate>();
  for (let c: PeerCertificate | undefined = cert; c !== undefined && !seen.has(c); c = (c as tls.DetailedPeerCertificate).issuerCertificate as PeerCertificate | undefined) {
    seen.add(c);
    // Node leaves `raw` out of an empty certificate object, whatever its type says.
    const raw = c.raw as Buffer | undefined;
    if (raw !== undefined && endpoint.trustAnchors.some((anchor) => anchor.equals(raw))) return undefined;
  }
  return Object.assign(new Error('its chain does not lead to a trusted CA'), { code: 'ERR_KMIP_UNTRUSTED_CHAIN' });
}

/** DER of PEM certificates, for KmipEndpoint.trustAnchors. */
export function trustAnchorsFromPem(pems: readonly string[]): Buffer[] {
  return pems.map((pem) => new X509Certificate(pem).raw);
}

/** Certificate verification failures of our side (OpenSSL verify codes, Node's host check, ours). */
const LOCAL_VERIFY_FAILURE = /^(ERR_TLS_CERT_ALTNAME_INVALID|ERR_KMIP_UNTRUSTED_CHAIN|UNABLE_TO_[A-Z_]+|[A-Z_]*CERT[A-Z_]*)$/;

/** One sentence an operator can act on, naming the side that refused; never a secret. */
function describeSocketError(e: Error, phase: 'connect' | 'handshake' | 'request', endpoint: KmipEndpoint): KmipUnavailableError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  const at = `the KMIP server at ${where(endpoint)}`;
  const maybeSent = phase === 'request';
  const make = (message: string) => new KmipUnavailableError(message, maybeSent, { cause: e });
  if (code === 'ECONNREFUSED') return make(`Connection refused by ${at}: is it running and listening on that port?`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return make(`Cannot resolve the KMIP server host name ${endpoint.host}`);
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return make(`No route to ${at}`);
  if (code === 'ETIMEDOUT') return make(`Connection to ${at} timed out`);
  if (!code.startsWith('ERR_SSL') && LOCAL_VERIFY_FAILURE.test(code)) {
    return make(
      `TLS handshake failed: the EKM refused the certificate of ${at} (${e.message}): ` +
        `the server's certificate must be issued by a CA in ${endpoint.trustSource} and name ${endpoint.host}`,
    );
  }
  // OpenSSL 3.0 (Node.js 20) names a received alert "sslv3 alert ...", OpenSSL 3.2 and later
  // (Node.js 24) "ssl/tls alert ...": ERR_SSL_SSLV3_ALERT_* and ERR_SSL_SSL/TLS_ALERT_*.
  const alert = /^ERR_SSL_(?:SSLV3|SSL\/TLS|TLSV1|TLSV13)_ALERT_(.+)$/.exec(code);
  if (alert !== null) {
    const name = alert[1]!;
    const why =
      name === 'UNKNOWN_CA'
        ? 'it does not trust the CA that issued the client certificate in store.kmip.key.file'
        : name === 'UNSUPPORTED_CERTIFICATE'
          ? 'it does not accept the client certificate in store.kmip.key.file for a client: does the certificate carry extendedKeyUsage=clientAuth?'
          : name.includes('CERTIFICATE')
            ? 'it does not accept the client certificate in store.kmip.key.file'
            : 'it does not accept the client certificate in store.kmip.key.file, or none of its TLS versions and ciphers';
    return make(`TLS handshake failed: ${at} refused the connection (TLS alert: ${name.toLowerCase().replace(/_/g, ' ')}); ${why}`);
  }
  if (code.startsWith('ERR_SSL')) return make(`TLS handshake with ${at} failed (${code}): is it a KMIP server speaking TLS on that port?`);
  if (phase === 'handshake' && (code === 'ECONNRESET' || code === 'EPIPE')) {
    return make(`TLS handshake failed: ${at} closed the connection during the handshake; it may have refused the client certificate in store.kmip.key.file`);
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') return make(`The connection to ${at} was reset`);
  return make(`Connection to ${at} failed (${code || e.message})`);
}
