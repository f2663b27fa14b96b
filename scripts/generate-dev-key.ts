/**
 * `npm run -s dev-key -- <email>`: prints a PUT body with a new decrypted private key for <email>
 * (legacy Curve25519, made with OpenPGP.js), to try the API by hand.
 */
import * as openpgp from 'openpgp';

const email = process.argv[2];
if (!email?.includes('@')) {
  process.stderr.write('Usage: npm run -s dev-key -- <email>\n');
  process.exit(2);
}
// Legacy Curve25519 (EdDSA/ECDH), as the FlowCrypt apps make: GnuPG 2.2 reads it, unlike RFC 9580's new X25519 keys.
const { privateKey } = await openpgp.generateKey({ userIDs: [{ email }], type: 'ecc', curve: 'curve25519Legacy', format: 'armored' });
process.stdout.write(`${JSON.stringify({ privateKey })}\n`);
