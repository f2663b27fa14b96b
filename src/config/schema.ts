/**
 * Every property the EKM understands: its type, default, when it is required and one doc line.
 * The shipped reference config (etc/flowcrypt-email-key-manager.properties) must list exactly these
 * names; a test compares the two.
 */

export const STORE_TYPES = ['EncryptedDbStore', 'Pkcs11Store', 'KmipStore'] as const;
export const LOGGER_TYPES = ['StdoutLogger', 'SplunkHttpLogger', 'StackdriverLogger'] as const;
export const AUTH_TYPES = ['OpenIDConnectAuthenticator'] as const;
export const ACL_TYPES = ['SimpleAcl'] as const;
/** `FINE` (java.util.logging's name, which operators of the earlier Java product used) means `debug`. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'FINE'] as const;
export const KEY_PROVISIONING = ['client', 'admin'] as const;

export type PropertyType = 'string' | 'secret' | 'boolean' | 'port' | 'positive-integer' | 'seconds' | 'byte-count' | 'enum' | 'enum-list' | 'list' | 'origin-list' | 'address-list' | 'url' | 'file';

export interface PropertyDef {
  readonly name: string;
  readonly type: PropertyType;
  /** One line for operators; also what `--help` and the reference config say. */
  readonly doc: string;
  /** The value used when the property is absent. */
  readonly default?: string;
  /** Valid options for `enum` and `enum-list`. */
  readonly options?: readonly string[];
  /**
   * When the property must be present: `true` always, or a predicate on the other raw values
   * (e.g. only for `store.type=KmipStore`). Absent: optional.
   */
  readonly requiredWhen?: true | ((raw: RawProperties) => boolean);
  /**
   * When the property means anything at all; set while this is false it is ignored with a warning.
   * Absent: always.
   */
  readonly appliesWhen?: (raw: RawProperties) => boolean;
  /**
   * Takes effect only at a restart: a reload keeps the running value (and says so). Listeners the
   * primary holds, the store every worker shares, the log outputs of the primary.
   */
  readonly restartOnly?: true;
}

export type RawProperties = ReadonlyMap<string, string>;

const storeIs = (type: (typeof STORE_TYPES)[number]) => (raw: RawProperties) => raw.get('store.type') === type;
const loggerIncludes = (type: (typeof LOGGER_TYPES)[number]) => (raw: RawProperties) =>
  (raw.get('logger.types') ?? 'StdoutLogger').split(',').map((s) => s.trim()).includes(type);
const httpsEnabled = (raw: RawProperties) => (raw.get('api.https.enabled') ?? 'true') === 'true';

export const SCHEMA: readonly PropertyDef[] = [
  // General
  { name: 'org.id', type: 'string', requiredWhen: true, doc: 'An identifier for your organisation, as assigned with your license.' },
  { name: 'org.domains', type: 'list', doc: "Comma-separated email domains of your organisation. When set, only users of these domains are served (by the token's hd claim or the email's domain) and the Web Key Directory answers for them. Unset: every domain (a warning is logged at start). ASCII domain names; internationalised ones in their xn-- form." },
  { name: 'api.hostname', type: 'string', default: 'localhost', restartOnly: true, doc: 'The address the EKM listens on (a host name or IP address).' },
  { name: 'api.port', type: 'port', default: '32356', restartOnly: true, doc: 'The TCP port the EKM listens on.' },
  { name: 'api.workers', type: 'positive-integer', restartOnly: true, doc: 'How many worker processes serve requests. Default: one per CPU.' },
  { name: 'api.https.enabled', type: 'boolean', default: 'true', restartOnly: true, doc: 'true to listen on HTTPS; false for plain HTTP, which you MUST put behind an HTTPS-terminating proxy on the same machine.' },
  { name: 'api.https.key.file', type: 'file', requiredWhen: httpsEnabled, appliesWhen: httpsEnabled, doc: 'PKCS#12 keystore with the private key and certificate chain presented to HTTPS clients.' },
  { name: 'api.https.key.password', type: 'secret', default: '', appliesWhen: httpsEnabled, doc: 'The password of api.https.key.file.' },
  { name: 'api.cors.origins', type: 'origin-list', doc: 'Comma-separated origins allowed by CORS (the browser extension origins): exact origins, and moz-extension://* for every Firefox installation (each has its own random origin). No other wildcard. Comment out to allow all origins.' },
  { name: 'api.keys.provisioning', type: 'enum', options: KEY_PROVISIONING, default: 'client', doc: "client: users' apps may store their own private key with PUT. admin: PUT is refused (405) and keys are provisioned by an administrator with --import." },
  { name: 'api.keys.max.per.user', type: 'positive-integer', default: '10', doc: 'The most private keys one user may hold. A PUT or --import of a new fingerprint beyond it is refused (400); an update of a key the user already holds (a revocation, a new expiry) always gets through.' },
  { name: 'api.keys.max.bytes.per.user', type: 'byte-count', default: '1048576', doc: "The most bytes of armored private keys one user may hold (1 MB by default). A new key, or an update that grows a key, past it is refused (400)." },
  { name: 'api.proxy.trusted', type: 'address-list', doc: 'Comma-separated addresses or CIDRs (IPv4 and IPv6, e.g. 127.0.0.1,10.0.0.0/8,fd00::/8) of the reverse proxies in front of the EKM: their X-Forwarded-For and X-Forwarded-Proto are believed, so the audit trail and access log carry the real client address. Unset: none (the headers are ignored and the TCP peer is the client).' },
  { name: 'api.metrics.port', type: 'port', restartOnly: true, doc: 'The TCP port of a separate plain-HTTP listener serving Prometheus metrics at /metrics, aggregated over every worker. Unset: no metrics listener.' },
  { name: 'api.metrics.hostname', type: 'string', default: '127.0.0.1', restartOnly: true, doc: 'The address the metrics listener binds to. Keep it on a private network: the metrics are not authenticated.' },
  { name: 'api.drain.seconds', type: 'seconds', default: '0', doc: 'On stop (SIGTERM, systemctl stop), how many seconds /health answers 503 while every request is still served, before the EKM stops accepting connections: at least the load balancer\'s health-check interval times its fall count, so that it takes the node out before the port closes. 0: close at once.' },
  { name: 'truststore.file', type: 'file', restartOnly: true, doc: 'PKCS#12 truststore with the CA certificates that verify the KMIP server. Comment out to use the system CAs.' },
  { name: 'truststore.password', type: 'secret', default: '', restartOnly: true, doc: 'The password of truststore.file.' },
  // Store
  { name: 'store.type', type: 'enum', options: STORE_TYPES, requiredWhen: true, restartOnly: true, doc: 'Where keys are kept: Pkcs11Store (an HSM over PKCS#11), KmipStore (a KMIP 1.0 key server), or EncryptedDbStore (an embedded encrypted database, for evaluation and single-node installs).' },
  { name: 'store.pkcs11.module', type: 'file', requiredWhen: storeIs('Pkcs11Store'), appliesWhen: storeIs('Pkcs11Store'), restartOnly: true, doc: "Path to the HSM vendor's PKCS#11 shared library." },
  { name: 'store.pkcs11.pin', type: 'secret', requiredWhen: storeIs('Pkcs11Store'), appliesWhen: storeIs('Pkcs11Store'), restartOnly: true, doc: "The token's user PIN; some vendors (e.g. Fortanix) take a file://<config file> here, which is passed on unchanged." },
  { name: 'store.kmip.hostname', type: 'string', requiredWhen: storeIs('KmipStore'), appliesWhen: storeIs('KmipStore'), restartOnly: true, doc: 'Host name of the KMIP server.' },
  { name: 'store.kmip.port', type: 'port', default: '5696', appliesWhen: storeIs('KmipStore'), restartOnly: true, doc: 'Port of the KMIP server.' },
  { name: 'store.kmip.key.file', type: 'file', requiredWhen: storeIs('KmipStore'), appliesWhen: storeIs('KmipStore'), restartOnly: true, doc: 'PKCS#12 keystore with the client certificate and key presented to the KMIP server.' },
  { name: 'store.kmip.key.password', type: 'secret', default: '', appliesWhen: storeIs('KmipStore'), restartOnly: true, doc: 'The password of store.kmip.key.file.' },
  { name: 'store.db.folder', type: 'string', requiredWhen: storeIs('EncryptedDbStore'), appliesWhen: storeIs('EncryptedDbStore'), restartOnly: true, doc: 'Folder of the encrypted database (created if missing).' },
  { name: 'store.db.encryption.key', type: 'secret', requiredWhen: storeIs('EncryptedDbStore'), appliesWhen: storeIs('EncryptedDbStore'), restartOnly: true, doc: 'Passphrase the database encryption key is derived from (scrypt). Use a long random value and keep it safe: without it the data cannot be read.' },
  // Logger
  { name: 'logger.types', type: 'enum-list', options: LOGGER_TYPES, default: 'StdoutLogger', restartOnly: true, doc: 'Comma-separated log outputs: StdoutLogger, SplunkHttpLogger, StackdriverLogger.' },
  { name: 'logger.default.level', type: 'enum', options: LOG_LEVELS, default: 'info', doc: 'Only entries at or above this level are written: trace, debug, info, warn, error (FINE means debug).' },
  { name: 'logger.stackdriver.credentials.file', type: 'file', requiredWhen: loggerIncludes('StackdriverLogger'), appliesWhen: loggerIncludes('StackdriverLogger'), restartOnly: true, doc: 'Google Cloud service account credentials file (JSON) for Cloud Logging.' },
  { name: 'logger.splunk.url', type: 'url', requiredWhen: loggerIncludes('SplunkHttpLogger'), appliesWhen: loggerIncludes('SplunkHttpLogger'), restartOnly: true, doc: 'Base URL of the Splunk HTTP Event Collector, e.g. https://splunk:8088.' },
  { name: 'logger.splunk.token', type: 'secret', requiredWhen: loggerIncludes('SplunkHttpLogger'), appliesWhen: loggerIncludes('SplunkHttpLogger'), restartOnly: true, doc: 'The HTTP Event Collector token.' },
  { name: 'logger.splunk.disable.certificate.validation', type: 'boolean', default: 'false', appliesWhen: loggerIncludes('SplunkHttpLogger'), restartOnly: true, doc: "true to accept any certificate from the Splunk server; for debugging logging only." },
  // Authentication
  { name: 'auth.type', type: 'enum', options: AUTH_TYPES, requiredWhen: true, doc: 'How users are authenticated: OpenIDConnectAuthenticator (ID tokens of an OpenID Connect provider).' },
  { name: 'auth.openid.issuer', type: 'url', requiredWhen: true, doc: 'Issuer of the ID tokens, e.g. https://accounts.google.com.' },
  { name: 'auth.openid.jwks', type: 'url', doc: "URL of the issuer's JSON Web Key Set. Unset: discovered from the issuer's /.well-known/openid-configuration." },
  { name: 'auth.openid.audience', type: 'list', requiredWhen: true, doc: 'Comma-separated OAuth client ids accepted as the token audience (one per FlowCrypt app).' },
  // ACL
  { name: 'acl.type', type: 'enum', options: ACL_TYPES, requiredWhen: true, doc: 'Access control: SimpleAcl lets each user read and write only their own private keys; public keys are open to anyone.' },
];

export const SCHEMA_BY_NAME: ReadonlyMap<string, PropertyDef> = new Map(SCHEMA.map((p) => [p.name, p]));
