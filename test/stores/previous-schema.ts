import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DB_FILE_NAME } from '../../src/stores/encrypted-db-store.js';

/**
 * Turns an EncryptedDbStore database in `folder` back into what the previous version (schema 1)
 * wrote: no key id index, no triggers; the store must be closed.
 */
export function downgradeToSchema1(folder: string): void {
  const raw = new Database(join(folder, DB_FILE_NAME));
  // Closed last, as the store does it: SQLite then leaves the -wal and -shm files, which a test
  // that makes the files immutable (or the filesystem read-only) needs.
  const reader = new Database(join(folder, DB_FILE_NAME), { readonly: true });
  reader.prepare('SELECT count(*) FROM meta').get();
  try {
    raw.exec(`
      DROP TRIGGER keys_queue_insert; DROP TRIGGER keys_queue_update; DROP TRIGGER keys_drop_ids;
      DROP TABLE key_ids; DROP TABLE key_ids_pending; DELETE FROM meta WHERE name = 'schema';
    `);
  } finally {
    raw.close();
    reader.close();
  }
}
