import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DB_FILE_NAME } from '../../src/stores/encrypted-db-store.js';
import { runClientFlow } from './client-flow.js';

const PASSPHRASE = 'e2e database passphrase 7f3a9c';
let dataDir: string;

runClientFlow({
  type: 'EncryptedDbStore',
  async start() {
    dataDir = mkdtempSync(join(tmpdir(), 'ekm-e2e-data-'));
    return { 'store.type': 'EncryptedDbStore', 'store.db.folder': dataDir, 'store.db.encryption.key': PASSPHRASE };
  },
  // Damage the key-check value and every record on disk (what a failing disk or tampering does):
  // the AEAD refuses them, so reads must fail rather than come back short.
  async breakStore() {
    const db = new Database(join(dataDir, DB_FILE_NAME));
    const check = (db.prepare("SELECT value FROM meta WHERE name = 'check'").get() as { value: Buffer }).value;
    const rows = db.prepare('SELECT id, record FROM keys').all() as { id: number; record: Buffer }[];
    const flip = (b: Buffer) => Buffer.concat([b.subarray(0, 5), Buffer.from([b[5]! ^ 0xff]), b.subarray(6)]);
    db.prepare("UPDATE meta SET value = ? WHERE name = 'check'").run(flip(check));
    for (const r of rows) db.prepare('UPDATE keys SET record = ? WHERE id = ?').run(flip(r.record), r.id);
    return async () => {
      db.prepare("UPDATE meta SET value = ? WHERE name = 'check'").run(check);
      for (const r of rows) db.prepare('UPDATE keys SET record = ? WHERE id = ?').run(r.record, r.id);
      db.close();
    };
  },
  async stop() {
    rmSync(dataDir, { recursive: true, force: true });
  },
  secrets: () => [PASSPHRASE],
});
