import { loadOpenpgp } from './load-openpgp.js';

/**
 * A key id a client may look a public key up by: a v4 (40 hex) or v6 (64 hex) fingerprint, or a long
 * key id (16 hex) of the primary key or of any subkey. Uppercase, so every store indexes one spelling.
 */
const KEY_ID = /^(?:[0-9A-F]{16}|[0-9A-F]{40}|[0-9A-F]{64})$/;

/** The uppercase key id, or undefined when `text` is none of the three forms (any case accepted). */
export function parseKeyId(text: string): string | undefined {
  const id = text.toUpperCase();
  return KEY_ID.test(id) ? id : undefined;
}

/**
 * Every id the key answers to: its fingerprint and long id, and each subkey's fingerprint and long
 * id. The primary's come from the stored fingerprint alone (RFC 9580 5.5.4: a v4 key id is the
 * fingerprint's last 8 octets, a v6 one its first 8), so a public key that does not parse still
 * answers to those; the subkeys need OpenPGP.js.
 */
export async function keyIdsOf(fingerprint: string, armoredPublicKey: string): Promise<string[]> {
  const ids = new Set(primaryIds(fingerprint));
  const openpgp = await loadOpenpgp();
  let key;
  try {
    key = await openpgp.readKey({ armoredKey: armoredPublicKey });
  } catch {
    return [...ids];
  }
  if (key.getFingerprint().toUpperCase() !== fingerprint.toUpperCase()) return [...ids];
  for (const subkey of key.getSubkeys()) {
    ids.add(subkey.getFingerprint().toUpperCase());
    ids.add(subkey.getKeyID().toHex().toUpperCase());
  }
  return [...ids];
}

function primaryIds(fingerprint: string): string[] {
  const fp = fingerprint.toUpperCase();
  if (fp.length === 64) return [fp, fp.slice(0, 16)];
  if (fp.length === 40) return [fp, fp.slice(-16)];
  return [fp];
}
