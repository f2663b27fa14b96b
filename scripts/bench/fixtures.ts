/**
 * What the benchmark serves and sends: a real HTTPS OpenID provider (testbed/openid-provider.ts),
 * ID tokens signed by it, and a few users with real OpenPGP keys, kept between runs in the
 * git-ignored cache folder because RSA key generation takes seconds per key.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OpenIdProvider } from '../../testbed/openid-provider.js';
import { makeBenchUsers, type BenchUser } from './seed-store.js';

export const AUDIENCE = 'ekm-bench-client';
export const DOMAIN = 'bench.example';

export interface Idp {
  readonly provider: OpenIdProvider;
  /** The IdP's self-signed certificate, for the daemon's NODE_EXTRA_CA_CERTS. */
  readonly caFile: string;
  /** Its JWKS as published, for the baseline that verifies tokens itself. */
  readonly jwksFile: string;
  readonly minter: TokenMinter;
}

/** Starts the OpenID provider on 127.0.0.1 with a fresh certificate and signing key. */
export async function startIdp(dir: string): Promise<Idp> {
  const keyFile = join(dir, 'idp.key');
  const caFile = join(dir, 'idp.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', caFile, '-days', '2',
    '-subj', '/CN=EKM benchmark IdP', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
  const provider = await OpenIdProvider.start({
    tls: { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(caFile, 'utf8') },
    audience: AUDIENCE,
  });
  const signingKey = await provider.exportSigningKey();
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = signingKey;
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...publicJwk, use: 'sig' }] }));
  const minter = new TokenMinter(createPrivateKey({ key: signingKey, format: 'jwk' }), signingKey.kid!, provider.issuer);
  return { provider, caFile, jwksFile, minter };
}

/**
 * Signs ID tokens with the IdP's key using node:crypto directly: the new-token-per-request run
 * needs tens of thousands, and this is several times faster than jose's SignJWT. The tokens are
 * what the IdP's own mint() makes (RS256, iss, aud, sub, email, email_verified, iat, exp), plus a
 * random jti so that no two are alike.
 */
export class TokenMinter {
  private readonly header: string;

  constructor(
    private readonly key: KeyObject,
    kid: string,
    private readonly issuer: string,
  ) {
    this.header = base64url(JSON.stringify({ alg: 'RS256', kid, typ: 'JWT' }));
  }

  mint(email: string, lifetimeS = 2 * 3600): string {
    const now = Math.floor(Date.now() / 1000);
    const payload = base64url(JSON.stringify({
      iss: this.issuer,
      aud: AUDIENCE,
      sub: email,
      email,
      email_verified: true,
      iat: now,
      exp: now + lifetimeS,
      jti: randomBytes(9).toString('base64url'),
    }));
    const input = `${this.header}.${payload}`;
    return `${input}.${sign('sha256', Buffer.from(input), this.key).toString('base64url')}`;
  }
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

/** `count` users with real keys: read from the cache, or made and cached. */
export async function benchUsers(cacheDir: string, count: number, log: (line: string) => void): Promise<BenchUser[]> {
  const file = join(cacheDir, 'bench-users.json');
  if (existsSync(file)) {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as BenchUser[];
    if (cached.length >= count) return cached.slice(0, count);
  }
  log(`Making ${count} RSA keys for the benchmarked users (cached in ${file} for later runs)`);
  const users = await makeBenchUsers(count, DOMAIN);
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(file, JSON.stringify(users), { mode: 0o600 });
  return users;
}
