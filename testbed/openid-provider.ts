import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';

export interface MintOptions {
  /** Seconds from now; negative for an expired token. Default 3600. */
  readonly expiresIn?: number;
  /** Seconds from now for `iat`. Default 0. */
  readonly issuedAt?: number;
  /** Seconds from now for `nbf`; absent: no nbf. */
  readonly notBefore?: number;
  readonly audience?: string;
  readonly issuer?: string;
  /** Sign with a key the JWKS does not publish. */
  readonly unpublishedKey?: boolean;
}

type PrivateSigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

interface SigningKey {
  readonly kid: string;
  readonly privateKey: PrivateSigningKey;
  readonly publicJwk: JWK;
}

/**
 * A real, small OpenID Connect provider over HTTPS: discovery metadata, a JWKS with Cache-Control,
 * and RS256 ID tokens signed with its keys. Used by the development setup (`npm run dev`) and by
 * the tests; never part of the product.
 */
export class OpenIdProvider {
  /** When false, the JWKS and discovery answer 503, as an IdP outage would. */
  available = true;
  /** Cache-Control sent with the JWKS. */
  cacheControl = 'public, max-age=300';
  /** How many times the JWKS was fetched. */
  jwksRequests = 0;
  private readonly keys: SigningKey[] = [];
  private unpublished: SigningKey | undefined;

  private constructor(
    private readonly server: https.Server,
    readonly issuer: string,
    readonly audience: string,
  ) {}

  static async start(options: {
    tls: { key: string; cert: string };
    audience: string;
    host?: string;
    port?: number;
    signingKey?: JWK;
  }): Promise<OpenIdProvider> {
    let provider: OpenIdProvider | undefined;
    const server = https.createServer({ key: options.tls.key, cert: options.tls.cert }, (req, res) => provider!.handle(req, res));
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    provider = new OpenIdProvider(server, `https://${options.host ?? '127.0.0.1'}:${port}`, options.audience);
    if (options.signingKey) {
      provider.keys.push(await importSigningKey(options.signingKey));
    } else {
      await provider.rotateKey();
    }
    return provider;
  }

  get jwksUri(): string {
    return `${this.issuer}/jwks`;
  }

  /** The current signing key as a private JWK (to persist for the dev setup's token script). */
  async exportSigningKey(): Promise<JWK> {
    const current = this.keys[this.keys.length - 1]!;
    return { ...(await exportJWK(current.privateKey)), kid: current.kid, alg: 'RS256' };
  }

  /** Adds a new signing key to the JWKS and signs with it from now on. */
  async rotateKey(): Promise<void> {
    this.keys.push(await newSigningKey());
  }

  /** An ID token for these claims (`email` and `email_verified` included by the caller). */
  async mint(claims: Record<string, unknown>, options: MintOptions = {}): Promise<string> {
    const key = options.unpublishedKey ? (this.unpublished ??= await newSigningKey()) : this.keys[this.keys.length - 1]!;
    return signToken(key, { iss: options.issuer ?? this.issuer, aud: options.audience ?? this.audience, ...claims }, options);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private handle(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (!this.available) {
      send(503, { error: 'temporarily_unavailable' });
      return;
    }
    if (req.url === '/.well-known/openid-configuration') {
      send(200, {
        issuer: this.issuer,
        jwks_uri: this.jwksUri,
        authorization_endpoint: `${this.issuer}/authorize`,
        token_endpoint: `${this.issuer}/token`,
        response_types_supported: ['code', 'id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
      return;
    }
    if (req.url === '/jwks') {
      this.jwksRequests++;
      send(200, { keys: this.keys.map((k) => k.publicJwk) }, { 'cache-control': this.cacheControl });
      return;
    }
    send(404, { error: 'not_found' });
  }
}

/** Signs an ID token with a persisted private JWK (the dev token script, without a running server). */
export async function mintWithJwk(jwk: JWK, claims: Record<string, unknown>, options: MintOptions = {}): Promise<string> {
  return signToken(await importSigningKey(jwk), claims, options);
}

async function signToken(key: SigningKey, claims: Record<string, unknown>, options: MintOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {
    sub: typeof claims.email === 'string' ? claims.email : 'subject',
    ...claims,
    iat: now + (options.issuedAt ?? 0),
    exp: now + (options.expiresIn ?? 3600),
  };
  if (options.notBefore !== undefined) payload.nbf = now + options.notBefore;
  return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
}

async function newSigningKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = crypto.randomUUID();
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

async function importSigningKey(jwk: JWK): Promise<SigningKey> {
  const privateKey = (await importJWK(jwk, 'RS256', { extractable: true })) as PrivateSigningKey;
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  return { kid: jwk.kid!, privateKey, publicJwk: { ...pub, use: 'sig' } };
}
