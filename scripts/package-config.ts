/**
 * Writes the configuration the Debian package installs, from the reference config
 * (etc/flowcrypt-email-key-manager.properties, which documents every property): the same file with
 * the few values a packaged install needs. postinst fills in store.db.encryption.key, left empty
 * here, with a random passphrase.
 *
 * The result is validated with the EKM's own config parser, so a reference config that drifts from
 * these edits (a renamed property, a changed line) fails the package build instead of shipping.
 *
 * Usage: node build/scripts/package-config.js <reference config> <output>
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseConfig } from '../src/config/load-config.js';

/** `value`: set the property (uncommenting it if needed); `undefined`: comment it out. */
const EDITS: readonly (readonly [name: string, value: string | undefined])[] = [
  // Loopback only, by address: plain HTTP for a reverse proxy on the same machine. An address, not
  // `localhost`, which may resolve to ::1 first while the proxy connects to 127.0.0.1.
  ['api.hostname', '127.0.0.1'],
  ['api.https.enabled', 'false'],
  ['api.https.key.file', undefined],
  ['api.https.key.password', undefined],
  ['store.type', 'EncryptedDbStore'],
  // The service's StateDirectory.
  ['store.db.folder', '/var/lib/flowcrypt-ekm'],
  ['store.db.encryption.key', ''],
  ['logger.types', 'StdoutLogger'],
  ['auth.type', 'OpenIDConnectAuthenticator'],
  ['auth.openid.issuer', 'https://accounts.google.com'],
  ['auth.openid.jwks', 'https://www.googleapis.com/oauth2/v3/certs'],
];

const HEADER = `# FlowCrypt Email Key Manager: configuration of the flowcrypt-ekm service.
#
# Created at install with a random store.db.encryption.key: keep a copy of it somewhere safe, the
# database cannot be read without it. Upgrades never change this file; purging the package deletes
# it. Files named here must be readable by the flowcrypt-ekm user.
# After a change: flowcrypt-ekm --test-store-connection && systemctl restart flowcrypt-ekm
# Logs: journalctl -u flowcrypt-ekm
`;

function main(argv: readonly string[]): void {
  const [reference, output] = argv;
  if (reference === undefined || output === undefined) {
    throw new TypeError('usage: package-config <reference config> <output>');
  }
  const lines = readFileSync(reference, 'utf8').split('\n');
  for (const [name, value] of EDITS) {
    const pattern = new RegExp(`^#?${name.replace(/\./g, '\\.')}=`);
    const matches = lines.flatMap((line, i) => (pattern.test(line) ? [i] : []));
    if (matches.length !== 1) {
      throw new Error(`${reference}: expected one line for ${name}, found ${matches.length}; update scripts/package-config.ts`);
    }
    const i = matches[0]!;
    const current = lines[i]!.replace(/^#/, '');
    lines[i] = value === undefined ? `#${current}` : `${name}=${value}`;
  }
  // The reference's own header (the comment block up to the first blank line) gives way to ours.
  const firstBlank = lines.indexOf('');
  const text = HEADER + lines.slice(firstBlank).join('\n');
  // With the passphrase postinst will add, the file must be a valid config.
  parseConfig(text.replace(/^store\.db\.encryption\.key=$/m, `store.db.encryption.key=${'0'.repeat(64)}`), output);
  writeFileSync(output, text);
}

main(process.argv.slice(2));
