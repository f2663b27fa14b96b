import * as openpgp from 'openpgp';

/** Real OpenPGP keys made with OpenPGP.js, as the FlowCrypt apps make them. */
export async function makePrivateKey(
  emails: string | string[],
  options: { type?: 'curve25519' | 'rsa'; rsaBits?: number; passphrase?: string; expired?: boolean } = {},
): Promise<{ armored: string; publicKey: string; fingerprint: string }> {
  const { privateKey, publicKey } = await openpgp.generateKey({
    userIDs: (Array.isArray(emails) ? emails : [emails]).map((email) => ({ name: 'Test User', email })),
    type: options.type === 'rsa' ? 'rsa' : 'curve25519',
    ...(options.type === 'rsa' ? { rsaBits: options.rsaBits ?? 2048 } : {}),
    ...(options.passphrase ? { passphrase: options.passphrase } : {}),
    ...(options.expired ? { date: new Date(Date.now() - 10 * 86400_000), keyExpirationTime: 86400 } : {}),
    format: 'armored',
    config: { minRSABits: 512 },
  });
  const key = await openpgp.readKey({ armoredKey: publicKey });
  return { armored: privateKey, publicKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** Two private keys inside a single armor block (a transferable key sequence). */
export async function twoKeysInOneArmor(a: string, b: string): Promise<string> {
  const binary = [await openpgp.readPrivateKey({ armoredKey: a }), await openpgp.readPrivateKey({ armoredKey: b })].map((k) => k.write());
  const joined = new Uint8Array(binary[0]!.length + binary[1]!.length);
  joined.set(binary[0]!, 0);
  joined.set(binary[1]!, binary[0]!.length);
  return openpgp.armor(openpgp.enums.armor.privateKey, joined);
}

/**
 * A real private key whose user ids are exactly these strings, e.g. `Kate <\u212Aate@example.com>`
 * or with control characters, which OpenPGP.js refuses as an `email` when generating but parses
 * from any key it reads (as another implementation could have written it).
 */
export async function makePrivateKeyWithUserIds(userIds: string[]): Promise<{ armored: string; fingerprint: string }> {
  // A name is any string to OpenPGP.js, and it writes a name-only user id verbatim.
  const { privateKey } = await openpgp.generateKey({ userIDs: userIds.map((name) => ({ name })), type: 'curve25519', format: 'armored' });
  const key = await openpgp.readPrivateKey({ armoredKey: privateKey });
  return { armored: privateKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** The same key (same fingerprint) with new self-signatures that set an expiry a year out: an update the apps send. */
export async function withNewExpiry(armored: string, email: string): Promise<string> {
  const privateKey = await openpgp.readPrivateKey({ armoredKey: armored });
  const { privateKey: renewed } = await openpgp.reformatKey({ privateKey, userIDs: [{ name: 'Test User', email }], keyExpirationTime: 365 * 86400, format: 'armored', config: { minRSABits: 512 } });
  return renewed;
}

/** The same key revoked by its own revocation signature: what an administrator's revocation looks like. */
export async function revoked(armored: string): Promise<string> {
  const privateKey = await openpgp.readPrivateKey({ armoredKey: armored });
  const { privateKey: revokedKey } = await openpgp.revokeKey({ key: privateKey, format: 'armored', config: { minRSABits: 512 } });
  return revokedKey;
}

/** The key with a revocation signature made by another key: not a revocation of this key. */
export async function withForeignRevocation(armored: string, foreignArmored: string): Promise<string> {
  const key = await openpgp.readPrivateKey({ armoredKey: armored });
  const foreign = await openpgp.readPrivateKey({ armoredKey: await revoked(foreignArmored) });
  const packets = key.toPacketList();
  const foreignRevocation = foreign.revocationSignatures[0]!;
  const list = new openpgp.PacketList<openpgp.AnyPacket>();
  list.push(packets[0]!, foreignRevocation, ...packets.slice(1));
  return openpgp.armor(openpgp.enums.armor.privateKey, list.write());
}
