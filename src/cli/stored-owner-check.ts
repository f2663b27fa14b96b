import { checkEmailAddress, displayEmail, isSameMailbox } from '../keys/email-address.js';
import { loadOpenpgp } from '../keys/load-openpgp.js';
import type { Store } from '../stores/store.js';

/** A stored key the email rule would not have let in under its owner's email. */
export interface MisownedKey {
  /** The stored owner email, escaped for display (a lookalike shows as `\u212Aate@...`). */
  readonly email: string;
  readonly fingerprint: string;
  readonly reason: string;
}

/**
 * Keys put under the rule before keys/email-address.ts (Unicode lowercasing, control characters and
 * quotes accepted) whose owner the rule now refuses or maps to another spelling, or whose user ids
 * name no mailbox equal to their owner's (a `\u212Aate@example.com` user id stored as Kate's).
 * Reads only the owner email and the public key of each record, never prints key material.
 * A store that fails mid-way throws (the caller reports a failure), never a partial "all fine".
 */
export async function findMisownedKeys(store: Store): Promise<{ checked: number; misowned: MisownedKey[] }> {
  const openpgp = await loadOpenpgp();
  const misowned: MisownedKey[] = [];
  let checked = 0;
  for await (const key of store.all()) {
    checked++;
    const flag = (reason: string) => misowned.push({ email: displayEmail(key.email), fingerprint: key.fingerprint, reason });
    const owner = checkEmailAddress(key.email);
    if (owner.email === undefined) {
      flag(`the owner email ${owner.refusal}`);
      continue;
    }
    if (owner.email !== key.email) {
      flag(`the owner email is now spelt ${owner.email}`);
      continue;
    }
    let userIdEmails: (string | undefined)[];
    try {
      userIdEmails = (await openpgp.readKey({ armoredKey: key.publicKey })).users.map((u) => u.userID?.email);
    } catch {
      flag('the stored public key cannot be read');
      continue;
    }
    if (!userIdEmails.some((email) => isSameMailbox(email, owner.email))) flag('no user id of the key names the owner in ASCII');
  }
  return { checked, misowned };
}
