import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/errors.js';
import { loadConfig, parseConfig, resolveConfigFile } from '../../src/config/load-config.js';
import { SCHEMA } from '../../src/config/schema.js';

const REFERENCE = resolve(import.meta.dirname, '../../../etc/flowcrypt-email-key-manager.properties');

const base: Record<string, string> = {
  'org.id': 'test.org',
  'api.https.enabled': 'false',
  'store.type': 'EncryptedDbStore',
  'store.db.folder': './data',
  'store.db.encryption.key': 'passphrase',
  'auth.type': 'OpenIDConnectAuthenticator',
  'auth.openid.issuer': 'https://accounts.google.com',
  'auth.openid.audience': 'a.apps.googleusercontent.com, b.apps.googleusercontent.com',
  'acl.type': 'SimpleAcl',
};
const text = (props: Record<string, string | undefined>) =>
  Object.entries(props).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join('\n');
const parse = (overrides: Record<string, string | undefined> = {}) => parseConfig(text({ ...base, ...overrides }), '/etc/ekm/test.properties');
const refused = (overrides: Record<string, string | undefined>, message: string | RegExp) =>
  assert.throws(() => parse(overrides), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });

describe('reference config', () => {
  it('lists exactly the properties of the schema, each with a comment above it', () => {
    const lines = readFileSync(REFERENCE, 'utf8').split('\n');
    const listed = new Map<string, number>();
    lines.forEach((line, i) => {
      const m = /^#?([a-z][a-z0-9.]*[a-z0-9])=/.exec(line);
      if (m) listed.set(m[1]!, i);
    });
    assert.deepEqual([...listed.keys()].sort(), SCHEMA.map((p) => p.name).sort());
    for (const [name, i] of listed) {
      let j = i - 1;
      while (j >= 0 && /^#?[a-z][a-z0-9.]*=/.test(lines[j]!)) j--;
      assert.match(lines[j] ?? '', /^# \S/, `no comment above ${name}`);
    }
  });

  it('parses, and refuses to start only for the passphrase and keystore left empty on purpose', () => {
    assert.throws(() => loadConfig(REFERENCE), /Property 'store.db.encryption.key' not found/);
    const filled = readFileSync(REFERENCE, 'utf8').replace('store.db.encryption.key=', 'store.db.encryption.key=x');
    const config = parseConfig(filled, REFERENCE);
    assert.equal(config.store.type, 'EncryptedDbStore');
    assert.equal(config.auth.openid.issuer, 'https://accounts.google.com');
    assert.equal(config.api.port, 32356);
  });
});

describe('config validation', () => {
  it('builds a typed, frozen config with defaults', () => {
    const config = parse();
    assert.equal(Object.isFrozen(config), true);
    assert.equal(Object.isFrozen(config.api), true);
    assert.equal(Object.isFrozen(config.auth.openid.audience), true);
    assert.deepEqual(config.auth.openid.audience, ['a.apps.googleusercontent.com', 'b.apps.googleusercontent.com']);
    assert.equal(config.api.hostname, 'localhost');
    assert.equal(config.api.port, 32356);
    assert.ok(config.api.workers >= 1);
    assert.equal(config.api.https, undefined);
    assert.equal(config.api.corsOrigins, undefined);
    assert.equal(config.api.keyProvisioning, 'client');
    assert.deepEqual(config.api.trustedProxies, []);
    assert.equal(config.api.metrics, undefined);
    assert.deepEqual(config.api.keyLimits, { maxKeys: 10, maxBytes: 1048576 });
    assert.deepEqual(config.logger.types, ['StdoutLogger']);
    assert.equal(config.logger.level, 'info');
    assert.deepEqual(config.store, { type: 'EncryptedDbStore', folder: '/etc/ekm/data', encryptionKey: 'passphrase' });
    assert.throws(() => ((config.api as { port: number }).port = 1), TypeError);
  });

  it('reads every kind of value', () => {
    const config = parse({
      'api.port': '443', 'api.workers': '3', 'api.cors.origins': 'chrome-extension://x, moz-extension://y',
      'logger.default.level': 'FINE', 'org.domains': 'Example.com,example.org', 'api.keys.provisioning': 'admin',
      'api.keys.max.per.user': '3', 'api.keys.max.bytes.per.user': '65536',
    });
    assert.deepEqual(config.api.keyLimits, { maxKeys: 3, maxBytes: 65536 });
    assert.equal(config.api.port, 443);
    assert.equal(config.api.workers, 3);
    assert.deepEqual(config.api.corsOrigins, ['chrome-extension://x', 'moz-extension://y']);
    assert.equal(config.logger.level, 'debug');
    assert.deepEqual(config.org.domains, ['example.com', 'example.org']);
    assert.equal(config.api.keyProvisioning, 'admin');
  });

  it('resolves keystores relative to the config file and needs one for HTTPS', () => {
    refused({ 'api.https.enabled': undefined }, "Property 'api.https.key.file' not found in /etc/ekm/test.properties");
    const config = parse({ 'api.https.enabled': 'true', 'api.https.key.file': 'ks.p12', 'api.https.key.password': 'pw' });
    assert.deepEqual(config.api.https, { property: 'api.https.key.file', file: '/etc/ekm/ks.p12', password: 'pw' });
  });

  it('keeps the messages of the troubleshooting table (docs/operator-guide.md) for invalid options and missing properties', () => {
    refused({ 'store.type': 'MemoryStore' }, '[MemoryStore] is not a valid option for property [store.type]; valid options: EncryptedDbStore, Pkcs11Store, KmipStore');
    refused({ 'acl.type': 'OpenAcl' }, '[OpenAcl] is not a valid option for property [acl.type]; valid options: SimpleAcl');
    refused({ 'logger.types': 'StdoutLogger,FileLogger' }, '[FileLogger] is not a valid option for property [logger.types]; valid options: StdoutLogger, SplunkHttpLogger, StackdriverLogger');
    refused({ 'logger.default.level': 'verbose' }, /^\[verbose\] is not a valid option for property \[logger.default.level\]; valid options: trace, debug, info, warn, error/);
    refused({ 'api.https.enabled': 'yes' }, '[yes] is not a valid option for property [api.https.enabled]; valid options: true, false');
    refused({ 'org.id': undefined }, "Property 'org.id' not found in /etc/ekm/test.properties");
    refused({ 'auth.openid.audience': '' }, "Property 'auth.openid.audience' not found in /etc/ekm/test.properties");
    refused({ 'store.type': 'KmipStore' }, "Property 'store.kmip.hostname' not found in /etc/ekm/test.properties");
    refused({ 'store.type': 'Pkcs11Store' }, "Property 'store.pkcs11.module' not found in /etc/ekm/test.properties");
    refused({ 'logger.types': 'SplunkHttpLogger' }, "Property 'logger.splunk.url' not found in /etc/ekm/test.properties");
  });

  it('reads the metrics listener and the trusted proxies, naming an entry that is not an address or CIDR', () => {
    const config = parse({ 'api.metrics.port': '9356', 'api.proxy.trusted': '127.0.0.1, 10.0.0.0/8,::1,fd00::/8' });
    assert.deepEqual(config.api.metrics, { hostname: '127.0.0.1', port: 9356 });
    assert.deepEqual(config.api.trustedProxies, ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8']);
    assert.deepEqual(parse({ 'api.metrics.port': '9356', 'api.metrics.hostname': '0.0.0.0' }).api.metrics, { hostname: '0.0.0.0', port: 9356 });
    assert.throws(() => parse({ 'api.metrics.port': 'on' }), /\[on\] is not a valid option for property \[api.metrics.port\]/);
    assert.throws(() => parse({ 'api.proxy.trusted': '127.0.0.1,proxy.internal' }), /\[proxy.internal\] is not a valid option for property \[api.proxy.trusted\]; expected an IPv4 or IPv6 address, or a CIDR/);
    assert.throws(() => parse({ 'api.proxy.trusted': '10.0.0.0/40' }), /\[10.0.0.0\/40\] is not a valid option for property \[api.proxy.trusted\]; the prefix length must be a whole number from 0 to 32/);
    assert.throws(() => parse({ 'api.proxy.trusted': '10.0.0.1,' }), /\[api.proxy.trusted\]; expected a comma-separated list/);
  });

  it('refuses org.domains that the email rule would not accept as a domain (lookalikes, ports, Unicode)', () => {
    refused({ 'org.domains': 'example.com,\u212Aelvin.test' }, /^\[\u212Aelvin.test\] is not a valid option for property \[org.domains\]; expected domain names/);
    refused({ 'org.domains': 'example.com:443' }, /\[example.com:443\] is not a valid option for property \[org.domains\]/);
    refused({ 'org.domains': 'b\u00FCcher.example' }, /IDNs in their xn-- form/);
    assert.deepEqual(parse({ 'org.domains': 'xn--bcher-kva.Example' }).org.domains, ['xn--bcher-kva.example']);
  });

  it('refuses numbers that are not numbers', () => {
    refused({ 'api.port': 'abc' }, '[abc] is not a valid option for property [api.port]; expected a port number from 1 to 65535');
    refused({ 'api.port': '70000' }, /api\.port/);
    refused({ 'api.port': '80 ' + 'x' }, /api\.port/);
    refused({ 'api.workers': '0' }, /\[0\] is not a valid option for property \[api.workers\]/);
    refused({ 'api.workers': '2.5' }, /api\.workers/);
    refused({ 'api.keys.max.bytes.per.user': '1MB' }, '[1MB] is not a valid option for property [api.keys.max.bytes.per.user]; expected a number of bytes from 1024 to 1073741824');
    refused({ 'api.keys.max.bytes.per.user': '1023' }, /api\.keys\.max\.bytes\.per\.user/);
    refused({ 'api.keys.max.bytes.per.user': '1073741825' }, /api\.keys\.max\.bytes\.per\.user/);
    refused({ 'api.keys.max.per.user': '0' }, /api\.keys\.max\.per\.user/);
    refused({ 'auth.openid.issuer': 'accounts.google.com' }, /expected an http\(s\) URL/);
    refused({ 'auth.openid.audience': 'a,,b' }, /no empty item/);
  });

  it('refuses an unknown property with the closest known name', () => {
    refused({ 'api.prot': '80' }, "Unknown property 'api.prot' in /etc/ekm/test.properties: did you mean 'api.port'?");
    refused({ 'store.db.encyption.key': 'x' }, /did you mean 'store.db.encryption.key'\?/);
    refused({ 'completely.different.thing': 'x' }, "Unknown property 'completely.different.thing' in /etc/ekm/test.properties");
  });

  it('refuses a property set twice, naming both lines', () => {
    assert.throws(() => parseConfig(text(base) + '\napi.port=1\napi.port=2', '/x.properties'), /Property 'api.port' is set twice in \/x.properties \(lines 10 and 11\)/);
  });

  it('warns about properties that do not apply, and about unrestricted domains', () => {
    const config = parse({ 'store.kmip.hostname': 'kmip.example' });
    assert.ok(config.warnings.includes("Property 'store.kmip.hostname' is ignored with the current configuration"));
    assert.ok(config.warnings.some((w) => w.includes("'org.domains' is not set")));
    assert.equal(parse({ 'org.domains': 'example.com' }).warnings.length, 0);
  });

  it('serialises without secrets', () => {
    const config = parse({ 'api.https.enabled': 'true', 'api.https.key.file': 'k.p12', 'api.https.key.password': 'keystore-secret-1', 'store.db.encryption.key': 'db-secret-2' });
    const json = JSON.stringify(config);
    assert.equal(json.includes('keystore-secret-1'), false);
    assert.equal(json.includes('db-secret-2'), false);
    assert.match(json, /"encryptionKey":"\[redacted\]"/);
    assert.match(json, /"file":"\/etc\/ekm\/k.p12"/);
  });

  it('never echoes a secret in an error', () => {
    assert.throws(() => parse({ 'store.db.encryption.key': 'hunter2-secret', 'api.prot': '1' }), (e: Error) => !e.message.includes('hunter2'));
  });

  it('keeps trailing spaces of secrets (as Java does), trims other values', () => {
    const config = parseConfig(text(base).replace('store.db.encryption.key=passphrase', 'store.db.encryption.key= pass phrase ') + '\napi.hostname= 127.0.0.1 ', '/x.p');
    assert.equal((config.store as { encryptionKey: string }).encryptionKey, 'pass phrase ');
    assert.equal(config.api.hostname, '127.0.0.1');
  });

  it('finds the config file: --config first, then the working directory, then /etc', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-cfg-'));
    assert.throws(() => resolveConfigFile(undefined, dir), /Config file not found: tried .*flowcrypt-email-key-manager.properties and \/etc\/flowcrypt-ekm\/flowcrypt-email-key-manager.properties.*--config=<file>/);
    writeFileSync(join(dir, 'flowcrypt-email-key-manager.properties'), text(base));
    assert.equal(resolveConfigFile(undefined, dir), join(dir, 'flowcrypt-email-key-manager.properties'));
    writeFileSync(join(dir, 'other.properties'), text(base));
    assert.equal(resolveConfigFile('other.properties', dir), join(dir, 'other.properties'));
    assert.throws(() => resolveConfigFile('missing.properties', dir), /Config file not found: .*missing.properties \(given with --config\)/);
  });
});
