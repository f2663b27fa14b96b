import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { configFromProperties, readConfigFile } from '../../src/config/load-config.js';
import { prepareReload, type RunningConfig } from '../../src/config/reload-config.js';

const BASE = {
  'org.id': 'reload-unit',
  'api.port': '32356',
  'api.https.enabled': 'false',
  'store.type': 'EncryptedDbStore',
  'store.db.folder': 'db',
  'store.db.encryption.key': 'passphrase one',
  'logger.default.level': 'info',
  'auth.type': 'OpenIDConnectAuthenticator',
  'auth.openid.issuer': 'https://issuer.example',
  'auth.openid.audience': 'app-one',
  'acl.type': 'SimpleAcl',
};

describe('what a reload serves with', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ekm-reload-unit-'));
  const file = join(dir, 'ekm.properties');
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (values: Record<string, string>) => writeFileSync(file, Object.entries(values).map(([k, v]) => `${k}=${v}`).join('\n'));
  const running = (): RunningConfig => {
    const properties = readConfigFile(file);
    return { config: configFromProperties(properties, file), properties };
  };

  it('takes the new values, keeps the running value of restart-only properties, and names both', () => {
    write(BASE);
    const before = running();
    write({ ...BASE, 'logger.default.level': 'warn', 'auth.openid.audience': 'app-one,app-two', 'api.port': '40000', 'store.db.encryption.key': 'passphrase two', 'api.metrics.port': '9356' });
    const next = prepareReload(before);
    assert.deepEqual(next.changed, ['logger.default.level', 'auth.openid.audience']);
    assert.deepEqual(next.keptUntilRestart, ['api.port', 'api.metrics.port', 'store.db.encryption.key']);
    assert.equal(next.config.logger.level, 'warn');
    assert.deepEqual(next.config.auth.openid.audience, ['app-one', 'app-two']);
    assert.equal(next.config.api.port, 32356);
    assert.equal(next.config.api.metrics, undefined, 'a property added to the file that needs a restart stays absent');
    assert.equal(next.config.store.type === 'EncryptedDbStore' && next.config.store.encryptionKey, 'passphrase one');
    assert.equal(next.properties.get('api.port'), '32356');
  });

  it('refuses a file a restart would refuse, even in a restart-only property, naming it', () => {
    write(BASE);
    const before = running();
    write({ ...BASE, 'store.type': 'KmipStore' });
    assert.throws(() => prepareReload(before), /Property 'store.kmip.hostname' not found/);
    write({ ...BASE, 'logger.default.level': 'loud' });
    assert.throws(() => prepareReload(before), /\[loud\] is not a valid option for property \[logger.default.level\]/);
  });
});
