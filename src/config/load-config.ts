import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parseLines } from 'dot-properties';
import { trustedProxyProblem } from '../http/client-address.js';
import { corsOriginProblem } from '../http/cors-origins.js';
import { ConfigError } from '../errors.js';
import { normalizeDomain } from '../keys/email-address.js';
import { isSecretFieldName } from '../logging/redact-secrets.js';
import type { Config, KeystoreRef, LogLevel, StoreConfig } from './config.js';
import { SCHEMA, SCHEMA_BY_NAME, type PropertyDef, type RawProperties } from './schema.js';

/** The largest `byte-count` value (1 GiB): beyond it a limit no longer limits anything. */
const BYTE_COUNT_MAX = 1024 * 1024 * 1024;

export const CONFIG_FILE_NAME = 'flowcrypt-email-key-manager.properties';
export const SYSTEM_CONFIG_FILE = `/etc/flowcrypt-ekm/${CONFIG_FILE_NAME}`;

/**
 * The config file to use: `--config=<file>` when given, else the file in the working directory,
 * else the system-wide one under /etc.
 */
export function resolveConfigFile(explicit: string | undefined, cwd = process.cwd()): string {
  if (explicit !== undefined) {
    const file = resolve(cwd, explicit);
    if (!existsSync(file)) {
      throw new ConfigError(`Config file not found: ${file} (given with --config). Check the path.`);
    }
    return file;
  }
  const candidates = [resolve(cwd, CONFIG_FILE_NAME), SYSTEM_CONFIG_FILE];
  const found = candidates.find((f) => existsSync(f));
  if (found === undefined) {
    throw new ConfigError(
      `Config file not found: tried ${candidates.join(' and ')}. Create one from the reference config, or pass --config=<file>.`,
    );
  }
  return found;
}

/** Reads and validates a config file into the frozen Config; throws ConfigError with one clear line. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`Cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unknown error'}`);
  }
  return parseConfig(text, resolve(file));
}

/** Validates the text of a .properties file; `file` is used for messages and relative paths. */
export function parseConfig(text: string, file: string): Config {
  const raw = readProperties(text, file);
  const warnings: string[] = [];
  for (const [name] of raw) {
    const def = SCHEMA_BY_NAME.get(name);
    if (def === undefined) {
      const closest = closestName(name);
      throw new ConfigError(
        `Unknown property '${name}' in ${file}` + (closest === undefined ? '' : `: did you mean '${closest}'?`),
      );
    }
    if (def.appliesWhen !== undefined && !def.appliesWhen(raw)) {
      warnings.push(`Property '${name}' is ignored with the current configuration`);
    }
  }
  const values = new Map<string, unknown>();
  for (const def of SCHEMA) {
    const value = raw.get(def.name) ?? def.default;
    const applies = def.appliesWhen === undefined || def.appliesWhen(raw);
    const required = def.requiredWhen === true || def.requiredWhen?.(raw) === true;
    if (value === undefined || (value === '' && required)) {
      if (required) throw new ConfigError(`Property '${def.name}' not found in ${file}`);
      continue;
    }
    if (applies) values.set(def.name, convert(def, value, file));
  }
  const config = build(values, file, warnings);
  // Serialise by whitelist of the non-secret: a config that reaches a log never carries a secret.
  Object.defineProperty(config, 'toJSON', { value: () => redacted(config), enumerable: false });
  return deepFreeze(config);
}

function readProperties(text: string, file: string): RawProperties {
  const raw = new Map<string, string>();
  const lineOf = (offset: number) => text.slice(0, offset).split('\n').length;
  const firstLine = new Map<string, number>();
  for (const node of parseLines(text, true)) {
    if (node.type !== 'PAIR') continue;
    const pair = node as unknown as { key: string; value: string; range: [number, number, number, number] };
    const line = lineOf(pair.range[0]);
    const earlier = firstLine.get(pair.key);
    if (earlier !== undefined) {
      throw new ConfigError(`Property '${pair.key}' is set twice in ${file} (lines ${earlier} and ${line}); keep one`);
    }
    firstLine.set(pair.key, line);
    const def = SCHEMA_BY_NAME.get(pair.key);
    raw.set(pair.key, def?.type === 'secret' ? pair.value : pair.value.trim());
  }
  return raw;
}

function convert(def: PropertyDef, value: string, file: string): unknown {
  const invalidOption = (options: readonly string[]) =>
    new ConfigError(`[${value}] is not a valid option for property [${def.name}]; valid options: ${options.join(', ')}`);
  switch (def.type) {
    case 'string':
    case 'secret':
      return value;
    case 'file':
      return resolve(file, '..', value);
    case 'boolean':
      if (value !== 'true' && value !== 'false') throw invalidOption(['true', 'false']);
      return value === 'true';
    case 'port': {
      const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
      if (!(n >= 1 && n <= 65535)) {
        throw new ConfigError(`[${value}] is not a valid option for property [${def.name}]; expected a port number from 1 to 65535`);
      }
      return n;
    }
    case 'positive-integer': {
      const n = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
      if (!(n >= 1 && n <= 1024)) {
        throw new ConfigError(`[${value}] is not a valid option for property [${def.name}]; expected a whole number from 1 to 1024`);
      }
      return n;
    }
    case 'byte-count': {
      const n = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
      if (!(n >= 1024 && n <= BYTE_COUNT_MAX)) {
        throw new ConfigError(`[${value}] is not a valid option for property [${def.name}]; expected a number of bytes from 1024 to ${BYTE_COUNT_MAX}`);
      }
      return n;
    }
    case 'enum':
      if (!def.options?.includes(value)) throw invalidOption(def.options ?? []);
      return value;
    case 'list':
    case 'origin-list':
    case 'address-list':
    case 'enum-list': {
      const items = value.split(',').map((s) => s.trim());
      if (items.some((s) => s === '')) {
        throw new ConfigError(`[${value}] is not a valid option for property [${def.name}]; expected a comma-separated list with no empty item`);
      }
      if (def.type === 'origin-list') {
        for (const item of items) {
          const problem = corsOriginProblem(item);
          if (problem !== undefined) throw new ConfigError(`[${item}] is not a valid option for property [${def.name}]; ${problem}`);
        }
      }
      if (def.type === 'address-list') {
        for (const item of items) {
          const problem = trustedProxyProblem(item);
          if (problem !== undefined) throw new ConfigError(`[${item}] is not a valid option for property [${def.name}]; ${problem}`);
        }
      }
      if (def.type === 'enum-list') {
        const bad = items.find((s) => !def.options?.includes(s));
        if (bad !== undefined) {
          throw new ConfigError(`[${bad}] is not a valid option for property [${def.name}]; valid options: ${(def.options ?? []).join(', ')}`);
        }
      }
      return [...new Set(items)];
    }
    case 'url': {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw new ConfigError(`[${value}] is not a valid option for property [${def.name}]; expected an http(s) URL`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        throw new ConfigError(`[${value}] is not a valid option for property [${def.name}]; expected an http(s) URL`);
      }
      return value;
    }
  }
}

function build(v: ReadonlyMap<string, unknown>, file: string, warnings: string[]): Config {
  const str = (name: string) => v.get(name) as string;
  const optString = (name: string) => v.get(name) as string | undefined;
  const optList = (name: string) => v.get(name) as string[] | undefined;
  const optNumber = (name: string) => v.get(name) as number | undefined;
  const keystore = (fileProp: string, passwordProp: string): KeystoreRef | undefined => {
    const f = optString(fileProp);
    return f === undefined ? undefined : { property: fileProp, file: f, password: optString(passwordProp) ?? '' };
  };
  const storeType = str('store.type') as StoreConfig['type'];
  const store: StoreConfig =
    storeType === 'EncryptedDbStore'
      ? { type: storeType, folder: resolve(file, '..', str('store.db.folder')), encryptionKey: str('store.db.encryption.key') }
      : storeType === 'Pkcs11Store'
        ? { type: storeType, module: str('store.pkcs11.module'), pin: str('store.pkcs11.pin') }
        : {
            type: storeType,
            hostname: str('store.kmip.hostname'),
            port: v.get('store.kmip.port') as number,
            key: keystore('store.kmip.key.file', 'store.kmip.key.password')!,
            truststore: keystore('truststore.file', 'truststore.password'),
          };
  const level = str('logger.default.level');
  const loggerTypes = v.get('logger.types') as Config['logger']['types'];
  const httpsEnabled = v.get('api.https.enabled') as boolean;
  // The one email rule's domains (keys/email-address.ts): ASCII-lowercased, IDNs in their xn-- form.
  const domains = optList('org.domains')?.map((d) => {
    const domain = normalizeDomain(d);
    if (domain === undefined) throw new ConfigError(`[${d}] is not a valid option for property [org.domains]; expected domain names (ASCII letters, digits, hyphens; IDNs in their xn-- form)`);
    return domain;
  });
  if (domains === undefined) {
    warnings.push("'org.domains' is not set: users of every email domain are served. Set it to your organisation's domains.");
  }
  return {
    file,
    org: { id: str('org.id'), domains },
    api: {
      hostname: str('api.hostname'),
      port: v.get('api.port') as number,
      workers: optNumber('api.workers') ?? availableParallelism(),
      https: httpsEnabled ? keystore('api.https.key.file', 'api.https.key.password') : undefined,
      corsOrigins: optList('api.cors.origins'),
      keyProvisioning: str('api.keys.provisioning') as Config['api']['keyProvisioning'],
      keyLimits: { maxKeys: v.get('api.keys.max.per.user') as number, maxBytes: v.get('api.keys.max.bytes.per.user') as number },
      trustedProxies: optList('api.proxy.trusted') ?? [],
      metrics: v.has('api.metrics.port') ? { hostname: str('api.metrics.hostname'), port: v.get('api.metrics.port') as number } : undefined,
    },
    truststore: keystore('truststore.file', 'truststore.password'),
    store,
    logger: {
      types: loggerTypes,
      level: (level === 'FINE' ? 'debug' : level) as LogLevel,
      stackdriver: loggerTypes.includes('StackdriverLogger')
        ? { credentialsFile: str('logger.stackdriver.credentials.file') }
        : undefined,
      splunk: loggerTypes.includes('SplunkHttpLogger')
        ? {
            url: str('logger.splunk.url'),
            token: str('logger.splunk.token'),
            disableCertificateValidation: v.get('logger.splunk.disable.certificate.validation') as boolean,
          }
        : undefined,
    },
    auth: {
      type: str('auth.type') as Config['auth']['type'],
      openid: {
        issuer: str('auth.openid.issuer'),
        jwks: optString('auth.openid.jwks'),
        audience: v.get('auth.openid.audience') as string[],
      },
    },
    acl: { type: str('acl.type') as Config['acl']['type'] },
    warnings,
  };
}

/**
 * The config with every secret string replaced, by the logger's own list of secret field names
 * (only strings: the KMIP `key` object, file and password, stays, its password redacted).
 */
function redacted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redacted);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === 'string' && isSecretFieldName(k) ? '[redacted]' : redacted(v)]));
}

/** The known property closest to a misspelt one (Levenshtein distance), if any is close enough. */
function closestName(name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const def of SCHEMA) {
    const d = levenshtein(name, def.name);
    if (d < bestDistance) [best, bestDistance] = [def.name, d];
  }
  return bestDistance <= Math.max(3, Math.floor(name.length / 3)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const value of Object.values(o)) deepFreeze(value);
  }
  return o;
}
