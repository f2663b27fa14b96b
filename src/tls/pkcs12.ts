import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import forge from 'node-forge';
import type { KeystoreRef } from '../config/config.js';
import { ConfigError } from '../errors.js';

/**
 * A private key and its certificate chain in a form `tls` options take: the keystore itself when
 * Node's OpenSSL reads it, else the PEM-decoded key and chain.
 */
export type TlsIdentity =
  | { readonly pfx: Buffer; readonly passphrase: string }
  | { readonly key: string; readonly cert: string; readonly ca: string[] };

/**
 * Loads a PKCS#12 keystore holding one private key and its certificate chain. Keystores made by
 * `openssl pkcs12 -export` (AES, PBES2) and Java's keytool load natively; those made with
 * `openssl pkcs12 -export -legacy` (RC2/3DES), which Node's OpenSSL 3 refuses, are decoded with
 * node-forge.
 */
export function loadKeystore(ref: KeystoreRef): TlsIdentity {
  const pfx = readKeystoreFile(ref);
  try {
    createSecureContext({ pfx, passphrase: ref.password });
    return { pfx, passphrase: ref.password };
  } catch (e) {
    const message = (e as Partial<Error> | null | undefined)?.message ?? '';
    if (/mac verify failure|invalid password/i.test(message)) throw wrongPassword(ref);
    // Anything else (typically "unsupported" for RC2/3DES): let node-forge decode it.
  }
  const p12 = decode(ref, pfx);
  const keyBag = bagsOf(p12, forge.pki.oids.pkcs8ShroudedKeyBag!)[0] ?? bagsOf(p12, forge.pki.oids.keyBag!)[0];
  // node-forge leaves `key` null for a bag it could not decode, although its type says otherwise.
  const bagKey = keyBag?.key as forge.pki.rsa.PrivateKey | null | undefined;
  if (bagKey === undefined || bagKey === null) {
    throw new ConfigError(`${ref.property}: ${ref.file} holds no private key this version reads (an RSA key, or any key in a keystore made without -legacy)`);
  }
  const key = bagKey;
  const certs = certificates(p12);
  const leafIndex = certs.findIndex((c) => {
    // Not every certificate's key is RSA: n and e may be absent.
    const pub = c.publicKey as Partial<forge.pki.rsa.PublicKey>;
    return pub.n !== undefined && pub.e !== undefined && pub.n.equals(key.n) && pub.e.equals(key.e);
  });
  if (leafIndex < 0) throw new ConfigError(`${ref.property}: ${ref.file} holds no certificate for its private key`);
  const identity = {
    key: forge.pki.privateKeyToPem(key),
    cert: forge.pki.certificateToPem(certs[leafIndex]!),
    ca: certs.filter((_, i) => i !== leafIndex).map((c) => forge.pki.certificateToPem(c)),
  };
  try {
    createSecureContext({ key: identity.key, cert: identity.cert });
  } catch (e) {
    throw new ConfigError(`${ref.property}: ${ref.file} cannot be used for TLS (${(e as Error).message})`);
  }
  return identity;
}

/**
 * Loads a PKCS#12 truststore: the CA certificates (PEM) that verify a server. Private keys in it,
 * if any, are ignored.
 */
export function loadTruststore(ref: KeystoreRef): string[] {
  const certs = certificates(decode(ref, readKeystoreFile(ref))).map((c) => forge.pki.certificateToPem(c));
  if (certs.length === 0) throw new ConfigError(`${ref.property}: ${ref.file} holds no certificate`);
  return certs;
}

function readKeystoreFile(ref: KeystoreRef): Buffer {
  try {
    return readFileSync(ref.file);
  } catch (e) {
    throw new ConfigError(`${ref.property}: cannot read ${ref.file} (${(e as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
}

function wrongPassword(ref: KeystoreRef): ConfigError {
  return new ConfigError(`${ref.property}: wrong password for keystore ${ref.file} (failed to decrypt safe contents entry)`);
}

function decode(ref: KeystoreRef, der: Buffer): forge.pkcs12.Pkcs12Pfx {
  let asn1: forge.asn1.Asn1;
  try {
    asn1 = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')));
  } catch {
    throw new ConfigError(`${ref.property}: ${ref.file} is not a PKCS#12 keystore`);
  }
  try {
    return forge.pkcs12.pkcs12FromAsn1(asn1, false, ref.password);
  } catch (e) {
    const message = (e as Partial<Error> | null | undefined)?.message ?? '';
    if (/mac could not be verified|invalid password|decrypt/i.test(message)) throw wrongPassword(ref);
    throw new ConfigError(`${ref.property}: ${ref.file} is not a PKCS#12 keystore this version reads (${message})`);
  }
}

function certificates(p12: forge.pkcs12.Pkcs12Pfx): forge.pki.Certificate[] {
  return bagsOf(p12, forge.pki.oids.certBag!).flatMap((b) => (b.cert ? [b.cert] : []));
}

function bagsOf(p12: forge.pkcs12.Pkcs12Pfx, bagType: string): forge.pkcs12.Bag[] {
  return p12.getBags({ bagType })[bagType] ?? [];
}
