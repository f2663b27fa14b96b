import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { deleteKeys, DeleteTargetError, parseDeleteTarget } from '../../src/cli/delete-keys.js';
import { parseConfig } from '../../src/config/load-config.js';
import type { Config } from '../../src/config/config.js';
import { openStore } from '../../src/stores/store-registry.js';
import { MemoryLogger } from '../support/memory-logger.js';
import { encryptedDbStoreProperties } from '../support/store-backends.js';
import { makeKey } from '../stores/store-conformance.js';

function output() {
  const out = new PassThrough();
  const err = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  err.on('data', (d: Buffer) => (text += d.toString()));
  return { io: { out, err }, text: () => text };
}

describe('--delete', () => {
  let dir: string;
  let config: Config;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ekm-delete-'));
    const properties = {
      'org.id': 'delete.test',
      'api.https.enabled': 'false',
      'auth.type': 'OpenIDConnectAuthenticator',
      'auth.openid.issuer': 'https://issuer.invalid',
      'auth.openid.audience': 'x',
      'acl.type': 'SimpleAcl',
      ...encryptedDbStoreProperties(dir),
    };
    config = parseConfig(
      Object.entries(properties)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n'),
      'test.properties',
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('tells a fingerprint, an email and a file of emails apart, and refuses what is none of them', () => {
    const fp = 'ab12 '.repeat(8) + 'CD34EF56';
    assert.deepEqual(parseDeleteTarget(fp.repeat(1)), { fingerprint: 'AB12AB12AB12AB12AB12AB12AB12AB12CD34EF56' });
    assert.deepEqual(parseDeleteTarget('F'.repeat(64)), { fingerprint: 'F'.repeat(64) });
    assert.deepEqual(parseDeleteTarget('Alice@Example.COM'), { emails: ['alice@example.com'] });
    const file = join(dir, 'leavers.txt');
    writeFileSync(file, '  bob@example.com \r\n# comment\n\nBOB@example.com\ncarol@example.com\n');
    assert.deepEqual(parseDeleteTarget(file), { emails: ['bob@example.com', 'carol@example.com'] });
    assert.throws(
      () => parseDeleteTarget('\uFF41lice@example.com'),
      (e: unknown) => e instanceof DeleteTargetError && e.message.includes('it contains the character U+FF41'),
    );
    assert.throws(() => parseDeleteTarget(join(dir, 'missing.txt')), /neither a fingerprint nor an email, and not a readable file of emails \(ENOENT\)/);
    writeFileSync(file, '# only a comment\n');
    assert.throws(() => parseDeleteTarget(file), /names no email/);
  });

  it('asks on a terminal: declined removes nothing; accepted removes and says so', async () => {
    const key = makeKey('asked@example.com');
    const store = await openStore(config.store, { logger: new MemoryLogger() });
    await store.upsert(key);
    await store.close();
    const questions: string[] = [];
    const declined = output();
    const logger = new MemoryLogger();
    assert.equal(await deleteKeys(config, logger, 'asked@example.com', false, declined.io, async (q) => (questions.push(q), false)), 1);
    assert.match(questions[0]!, /^Remove these keys\? .*\[y\/N\] $/);
    assert.match(declined.text(), new RegExp(`1 key of 1 user to remove from EncryptedDbStore:\\n  asked@example.com ${key.fingerprint}\\n`));
    assert.match(declined.text(), /flowcrypt-ekm: nothing removed\n$/);
    assert.equal(logger.entries.filter((e) => e.fields.audit !== undefined).length, 0, 'nothing audited when nothing was done');
    const accepted = output();
    assert.equal(await deleteKeys(config, logger, 'asked@example.com', false, accepted.io, async () => true), 0);
    assert.match(accepted.text(), /Removed 1 key of 1 user from EncryptedDbStore\n$/);
    assert.deepEqual(
      logger.entries.filter((e) => e.fields.audit !== undefined).map((e) => [e.message, e.fields.email, e.fields.fingerprints]),
      [['private-key.delete', 'asked@example.com', [key.fingerprint]]],
    );
    const check = await openStore(config.store, { logger: new MemoryLogger() });
    assert.deepEqual(await check.listByEmail('asked@example.com'), []);
    await check.close();
  });
});
