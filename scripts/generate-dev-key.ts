/**
 * `npm run -s dev-key -- <email>`: prints a PUT body with a new decrypted private key for <email>
 * (Curve25519, made with OpenPGP.js), to try the API by hand.
 */
import * as openpgp from 'openpgp';

const email = process.argv[2];
if (email === undefined || !email.includes('@')) {
  process.stderr.write('Usage: npm run -s dev-key -- <email>\n');
  process.exit(2);
}
const { privateKey } = await openpgp.generateKey({ userIDs: [{ email }], type: 'curve25519', format: 'armored' });
process.stdout.write(`${JSON.stringify({ privateKey })}\n`);
