/**
 * The benchmark's ceilings: the same answer as the EKM's private-key GET (the same bytes, read from
 * a file) served by a cluster of the same worker count, with as little as possible in between.
 *
 *   node build/scripts/bench/baseline-server.js --kind=<kind> --port=<n> --workers=<n> --body=<file>
 *     [--jwks=<file> --issuer=<iss> --audience=<aud>]   (http-verify only)
 *
 * Kinds: `http` (bare node:http), `koa` (Koa with one route), `http-verify` (bare node:http that
 * verifies the bearer RS256 ID token with jose on every request, with the options the EKM uses).
 * Binds 127.0.0.1. SIGTERM stops the workers and the primary.
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import Router from '@koa/router';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import Koa from 'koa';
import { koaListener } from '../../src/http/koa-listener.js';

export const BASELINE_KINDS = ['http', 'koa', 'http-verify'] as const;
export type BaselineKind = (typeof BASELINE_KINDS)[number];

interface Options {
  readonly kind: BaselineKind;
  readonly port: number;
  readonly workers: number;
  readonly body: Buffer;
  readonly jwks: JSONWebKeySet | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
}

function parseOptions(argv: readonly string[]): Options {
  const named = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (m === null) throw new Error(`Unexpected argument ${arg}`);
    named.set(m[1]!, m[2]!);
  }
  const required = (name: string): string => {
    const value = named.get(name);
    if (value === undefined) throw new Error(`--${name}=... is required`);
    return value;
  };
  const kind = required('kind') as BaselineKind;
  if (!BASELINE_KINDS.includes(kind)) throw new Error(`--kind must be one of ${BASELINE_KINDS.join(', ')}`);
  const integer = (name: string): number => {
    const text = required(name);
    if (!/^[1-9]\d*$/.test(text)) throw new Error(`--${name} must be a positive integer`);
    return Number(text);
  };
  const jwksFile = named.get('jwks');
  if (kind === 'http-verify' && (jwksFile === undefined || !named.has('issuer') || !named.has('audience'))) {
    throw new Error('--kind=http-verify needs --jwks, --issuer and --audience');
  }
  return {
    kind,
    port: integer('port'),
    workers: integer('workers'),
    body: readFileSync(required('body')),
    jwks: jwksFile === undefined ? undefined : (JSON.parse(readFileSync(jwksFile, 'utf8')) as JSONWebKeySet),
    issuer: named.get('issuer'),
    audience: named.get('audience'),
  };
}

function serve(options: Options): http.Server {
  const { body } = options;
  switch (options.kind) {
    case 'http':
      return http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
        res.end(body);
      });
    case 'koa': {
      const app = new Koa();
      const router = new Router();
      router.get('/v1/keys/private', (ctx) => {
        ctx.type = 'application/json; charset=utf-8';
        ctx.body = body;
      });
      app.use(router.routes());
      return http.createServer(koaListener(app));
    }
    case 'http-verify': {
      const keys = createLocalJWKSet(options.jwks!);
      // The EKM's options (src/auth/openid-connect-authenticator.ts): the same algorithms, checks and skew.
      const verifyOptions = {
        algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
        issuer: [options.issuer!],
        audience: [options.audience!],
        clockTolerance: 60,
        requiredClaims: ['exp', 'iat'],
      };
      return http.createServer((req, res) => {
        const token = /^Bearer +([A-Za-z0-9_\-.]+=*)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
        const refuse = () => {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end('{"code":401,"message":"Invalid token","details":""}');
        };
        if (token === undefined) {
          refuse();
          return;
        }
        jwtVerify(token, keys, verifyOptions).then(({ payload }) => {
          if (payload.email_verified !== true) {
            refuse();
            return;
          }
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
          res.end(body);
        }, refuse);
      });
    }
  }
}

/** Runs when started as a script, not when bench.ts imports the kinds. */
function main(): void {
  const options = parseOptions(process.argv.slice(2));
  if (cluster.isPrimary) {
    for (let i = 0; i < options.workers; i++) cluster.fork();
    const stop = () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
      setTimeout(() => process.exit(0), 200).unref();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
  } else {
    const server = serve(options);
    server.keepAliveTimeout = 65_000;
    server.listen(options.port, '127.0.0.1');
    process.on('SIGTERM', () => process.exit(0));
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
