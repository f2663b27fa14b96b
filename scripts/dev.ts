/**
 * `npm run dev`: runs the EKM on the embedded store with a development identity provider, so a
 * newcomer can PUT and GET keys without Google. Everything it makes lives in ./dev (git-ignored):
 * a TLS certificate for the IdP, its signing key, a random database passphrase, the config.
 * The production default config (etc/) still points at Google.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { OpenIdProvider } from '../testbed/openid-provider.js';

export const DEV_DIR = resolve(import.meta.dirname, '../../dev');
export const DEV_IDP_FILE = join(DEV_DIR, 'idp.json');
const IDP_PORT = 32357;
const EKM_PORT = 32356;
const AUDIENCE = 'ekm-dev-client';

async function main(): Promise<void> {
  mkdirSync(DEV_DIR, { recursive: true, mode: 0o700 });
  const certFile = join(DEV_DIR, 'idp.crt');
  const keyFile = join(DEV_DIR, 'idp.key');
  if (!existsSync(certFile)) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '825',
      '-subj', '/CN=EKM development IdP', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
  }
  const saved = existsSync(DEV_IDP_FILE) ? (JSON.parse(readFileSync(DEV_IDP_FILE, 'utf8')) as { signingKey: import('jose').JWK }) : undefined;
  const idp = await OpenIdProvider.start({
    tls: { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') },
    audience: AUDIENCE,
    port: IDP_PORT,
    ...(saved ? { signingKey: saved.signingKey } : {}),
  });
  writeFileSync(DEV_IDP_FILE, JSON.stringify({ issuer: idp.issuer, audience: AUDIENCE, signingKey: await idp.exportSigningKey() }), { mode: 0o600 });

  const configFile = join(DEV_DIR, 'flowcrypt-email-key-manager.properties');
  if (!existsSync(configFile)) {
    writeFileSync(configFile, [
      '# Development config written by npm run dev: embedded store, local identity provider, plain HTTP on 127.0.0.1.',
      'org.id=development.org',
      'api.hostname=127.0.0.1',
      `api.port=${EKM_PORT}`,
      'api.https.enabled=false',
      'store.type=EncryptedDbStore',
      `store.db.folder=${join(DEV_DIR, 'data')}`,
      `store.db.encryption.key=${randomBytes(32).toString('base64')}`,
      'logger.types=StdoutLogger',
      'logger.default.level=info',
      'auth.type=OpenIDConnectAuthenticator',
      `auth.openid.issuer=${idp.issuer}`,
      `auth.openid.jwks=${idp.jwksUri}`,
      `auth.openid.audience=${AUDIENCE}`,
      'acl.type=SimpleAcl',
      '',
    ].join('\n'), { mode: 0o600 });
  }
  process.stdout.write([
    `Development identity provider: ${idp.issuer}`,
    `Config: ${configFile}`,
    `EKM: http://127.0.0.1:${EKM_PORT}/   (token: npm run -s token -- you@example.com)`,
    '',
  ].join('\n'));
  const ekm = spawn(process.execPath, [resolve(import.meta.dirname, '../src/main.js'), `--config=${configFile}`], {
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: certFile },
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => ekm.kill(signal));
  ekm.on('exit', (code) => {
    void idp.close().then(() => process.exit(code ?? 1));
  });
}

void main();
