/**
 * `npm run -s token -- <email>`: prints an ID token for <email> signed by the development identity
 * provider of `npm run dev` (valid for one hour).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { JWK } from 'jose';
import { mintWithJwk } from '../testbed/openid-provider.js';

const email = process.argv[2];
if (!email?.includes('@')) {
  process.stderr.write('Usage: npm run -s token -- <email>\n');
  process.exit(2);
}
let idp: { issuer: string; audience: string; signingKey: JWK };
try {
  idp = JSON.parse(readFileSync(join(resolve(import.meta.dirname, '../../dev'), 'idp.json'), 'utf8')) as typeof idp;
} catch {
  process.stderr.write('No development identity provider found: run npm run dev first.\n');
  process.exit(1);
}
process.stdout.write(`${await mintWithJwk(idp.signingKey, { iss: idp.issuer, aud: idp.audience, email, email_verified: true })}\n`);
