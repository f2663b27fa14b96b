import type { OwnerKeyLimits } from '../stores/owner-key-limits.js';
import type { ACL_TYPES, AUTH_TYPES, KEY_PROVISIONING, LOGGER_TYPES } from './schema.js';

/** The validated, frozen configuration, built once in the primary and rebuilt identically in workers. */
export interface Config {
  /** The file it was read from (absolute). */
  readonly file: string;
  readonly org: { readonly id: string; readonly domains: readonly string[] | undefined };
  readonly api: ApiConfig;
  readonly truststore: KeystoreRef | undefined;
  readonly store: StoreConfig;
  readonly logger: LoggerConfig;
  readonly auth: AuthConfig;
  readonly acl: { readonly type: (typeof ACL_TYPES)[number] };
  /** Operator-facing warnings found while validating (ignored properties and the like). */
  readonly warnings: readonly string[];
}

/** A PKCS#12 file and its password; loaded by src/tls. */
export interface KeystoreRef {
  /** The property that named the file, for error messages. */
  readonly property: string;
  readonly file: string;
  readonly password: string;
}

export interface ApiConfig {
  readonly hostname: string;
  readonly port: number;
  readonly workers: number;
  readonly https: KeystoreRef | undefined;
  /** undefined: every origin is allowed. */
  readonly corsOrigins: readonly string[] | undefined;
  readonly keyProvisioning: (typeof KEY_PROVISIONING)[number];
  /** What one user may hold; enforced by the store on every upsert (PUT and --import). */
  readonly keyLimits: OwnerKeyLimits;
  /** Addresses and CIDRs of the reverse proxies whose X-Forwarded-* headers are believed; empty: none. */
  readonly trustedProxies: readonly string[];
  /** On stop, how long /health fails while requests are still served, before the listener closes. */
  readonly drainMs: number;
  /** The Prometheus metrics listener (plain HTTP); undefined: off. */
  readonly metrics: { readonly hostname: string; readonly port: number } | undefined;
}

export interface EncryptedDbStoreConfig {
  readonly type: 'EncryptedDbStore';
  readonly folder: string;
  readonly encryptionKey: string;
}

export interface Pkcs11StoreConfig {
  readonly type: 'Pkcs11Store';
  readonly module: string;
  readonly pin: string;
}

export interface KmipStoreConfig {
  readonly type: 'KmipStore';
  readonly hostname: string;
  readonly port: number;
  /** The client identity presented to the KMIP server. */
  readonly key: KeystoreRef;
  /** CAs that verify the KMIP server; undefined: the system CAs. */
  readonly truststore: KeystoreRef | undefined;
}

export type StoreConfig = EncryptedDbStoreConfig | Pkcs11StoreConfig | KmipStoreConfig;

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface LoggerConfig {
  readonly types: readonly (typeof LOGGER_TYPES)[number][];
  readonly level: LogLevel;
  readonly stackdriver: { readonly credentialsFile: string } | undefined;
  readonly splunk: { readonly url: string; readonly token: string; readonly disableCertificateValidation: boolean } | undefined;
}

export interface AuthConfig {
  readonly type: (typeof AUTH_TYPES)[number];
  readonly openid: {
    readonly issuer: string;
    readonly jwks: string | undefined;
    readonly audience: readonly string[];
  };
}
