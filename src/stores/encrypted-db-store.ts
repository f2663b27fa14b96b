import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { EncryptedDbStoreConfig } from '../config/config.js';
import { ConfigError, EkmError, FingerprintConflictError, KeyIdIndexBuildingError, StoreReadOnlyError, StoreUnavailableError } from '../errors.js';
import { keyIdsOf } from '../keys/key-ids.js';
import type { Logger } from '../logging/logger.js';
import { checkOwnerKeyLimits, type OwnerKeyLimits } from './owner-key-limits.js';
import type { Store, StoreDependencies, StoredKey, UpsertResult } from './store.js';
import { errnoWriteFailure, folderWriteFailure, sqliteWriteFailure } from './write-failure.js';

/** The database file inside `store.db.folder`. */
export const DB_FILE_NAME = 'ekm.sqlite';
const FORMAT_VERSION = '1';
/**
 * The schema within format 1, raised only by additive changes that a previous version keeps
 * working with (it ignores tables it does not know): 2 added the key id index.
 */
const SCHEMA_VERSION = 2;
/** Records the key id indexer reads, decrypts and parses per transaction (a few ms each). */
const INDEX_BATCH = 50;
/** The serving indexer's pause between batches, so requests keep the database and the CPU. */
const INDEX_PAUSE_MS = 20;
/** scrypt cost: about 100 ms and 32 MiB on one core, paid once per process at start. */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const CHECK_PLAINTEXT = Buffer.from('flowcrypt-ekm key check v1');
/** How long a statement waits for another process's write lock before the request gets a 503. */
const BUSY_TIMEOUT_MS = 3000;
/**
 * Recent reads a process keeps: at most this many owners' keys, each for at most this long, and
 * only while no connection has committed anything since (see RecentReads).
 */
const RECENT_READS_MAX = 1000;
const RECENT_READ_MAX_AGE_MS = 60_000;

interface Keys {
  readonly encryption: Buffer;
  readonly index: Buffer;
}

interface KeyRow {
  readonly id: number;
  readonly owner: Buffer;
  readonly fp: Buffer;
  readonly iv: Buffer;
  readonly record: Buffer;
}

/** A store whose writes failed tries to open its write connection again at most this often. */
const WRITER_RETRY_MS = 1000;
/** How often /health asks the filesystem (and, while writes fail, SQLite) whether a write would work. */
const WRITE_CHECK_INTERVAL_MS = 1000;

/**
 * The embedded store: SQLite (WAL, synchronous=FULL) shared by every worker process. Nothing is on
 * disk in plaintext: each record is AES-256-GCM with its owner and fingerprint hashes as AAD; emails
 * and fingerprints are indexed by HMAC-SHA256. Keys come from the passphrase through scrypt with a
 * salt stored in the database, and a key-check value refuses a wrong passphrase before anything is
 * written.
 *
 * A database that can be read but not written (read-only filesystem, no permission, full disk) is
 * served read-only: reads go on, writes throw StoreReadOnlyError (503) until they work again.
 */
export async function openEncryptedDbStore(config: EncryptedDbStoreConfig, deps: StoreDependencies): Promise<Store> {
  const store = await openStoreFiles(config, deps.logger);
  try {
    // Operator commands index what a previous version stored before they return; a serving process
    // does it in the background in small batches, answering 503 to key id lookups meanwhile. Only
    // where the store can be written: read-only, it serves what is indexed (see listByKeyId).
    if (deps.setup === true) {
      if (store.canWrite()) await store.indexPending(Number.POSITIVE_INFINITY);
    } else {
      store.startIndexer();
    }
    return store;
  } catch (e) {
    await store.close();
    throw e;
  }
}

async function openStoreFiles(config: EncryptedDbStoreConfig, logger: Logger): Promise<EncryptedDbStore> {
  const files = new DbFiles(config.folder);
  // Check the passphrase on a read-only handle first: a wrong one must not touch the data.
  const reader = existsSync(files.db) ? openReader(files) : undefined;
  try {
    const unlocked = reader === undefined ? undefined : unlock(readMeta(reader, files), config);
    const writer = openWriter(files);
    if (writer instanceof StoreReadOnlyError) {
      if (reader === undefined) throw new StoreUnavailableError(`Cannot create the database ${files.db}: ${writer.details}`);
      if (!unlocked!.checked) {
        throw new StoreUnavailableError(`The database ${files.db} has no key-check value yet and cannot be written: ${writer.details}`);
      }
      return new EncryptedDbStore(files, reader, unlocked!.keys, writer, logger);
    }
    try {
      const keys = unlocked?.checked ? unlocked.keys : unlockAndSetCheck(writer, files, config, unlocked?.keys);
      return new EncryptedDbStore(files, reader ?? openReader(files), keys, writer, logger);
    } catch (e) {
      writer.close();
      throw e;
    }
  } catch (e) {
    reader?.close();
    throw e;
  }
}

/** The database file and SQLite's companions, which must be writable too. */
class DbFiles {
  readonly db: string;
  constructor(readonly folder: string) {
    this.db = join(folder, DB_FILE_NAME);
  }
  get all(): readonly string[] {
    return [this.db, `${this.db}-wal`, `${this.db}-shm`];
  }
}

/**
 * A read-only connection. On a read-only filesystem SQLite reads a WAL database only when its -shm
 * file is there (it cannot create one); the store keeps it after a clean stop for that reason (see
 * close()). Opening reads nothing: failures show at the first statement (readMeta).
 */
function openReader(files: DbFiles): Database.Database {
  try {
    return new Database(files.db, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
  } catch (e) {
    throw unreadable(e, files);
  }
}

/**
 * A read-write connection with the schema in place, or the reason writes are impossible now. Asks
 * the filesystem first: SQLite would open a read-only file read-only without a word, and fail only
 * at the first write.
 */
function openWriter(files: DbFiles): Database.Database | StoreReadOnlyError {
  try {
    mkdirSync(files.folder, { recursive: true, mode: 0o700 });
  } catch (e) {
    // A recursive mkdir reports ENOENT on a read-only filesystem: ask the nearest existing folder.
    const failure = errnoWriteFailure(e, files.folder) ?? folderWriteFailure(nearestExisting(files.folder), []);
    if (failure !== undefined) return failure;
    throw new ConfigError(`Cannot create store.db.folder ${files.folder}: ${(e as NodeJS.ErrnoException).code}`);
  }
  const before = folderWriteFailure(files.folder, files.all);
  if (before !== undefined) return before;
  let db: Database.Database | undefined;
  try {
    db = new Database(files.db, { timeout: BUSY_TIMEOUT_MS });
    db.pragma('journal_mode = WAL');
    // FULL: a transaction is on disk when commit returns, so an answered 200 survives power loss.
    db.pragma('synchronous = FULL');
    initialise(db);
    return db;
  } catch (e) {
    db?.close();
    const failure = sqliteWriteFailure(e, files.folder, files.all);
    if (failure !== undefined) return failure;
    throw unreadable(e, files);
  }
}

function nearestExisting(folder: string): string {
  let path = folder;
  while (!existsSync(path) && dirname(path) !== path) path = dirname(path);
  return path;
}

/**
 * What an operator reads when the database cannot be read: the filesystem's reason when there is
 * one (StoreUnavailableError: the service answers 503 until it is back), else "not an EKM database"
 * for a file SQLite does not recognise (ConfigError).
 */
function unreadable(e: unknown, files: DbFiles): ConfigError | StoreUnavailableError {
  const code = describeSqliteError(e);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') return new ConfigError(`${files.db} is not an EKM database (${code})`);
  const failure = folderWriteFailure(files.folder, files.all);
  if (failure !== undefined && code.startsWith('SQLITE_CANTOPEN') && !existsSync(`${files.db}-shm`)) {
    return new StoreUnavailableError(
      `Cannot read ${files.db} (${code}): ${failure.details}, and SQLite can read a WAL database there only with its -shm file, which is missing; make store.db.folder writable`,
    );
  }
  return new StoreUnavailableError(`Cannot read ${files.db} (${code}${failure === undefined ? '' : `; ${failure.details}`})`);
}

function initialise(db: Database.Database): void {
  db.transaction(() => {
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
      CREATE TABLE IF NOT EXISTS keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner BLOB NOT NULL,
        fp BLOB NOT NULL UNIQUE,
        iv BLOB NOT NULL,
        record BLOB NOT NULL
      ) STRICT;
      CREATE INDEX IF NOT EXISTS keys_owner ON keys (owner, id);
    `);
    const salt = randomBytes(32);
    const insert = db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)');
    insert.run('format', Buffer.from(FORMAT_VERSION));
    insert.run('kdf', Buffer.from(JSON.stringify({ alg: 'scrypt', ...SCRYPT, salt: salt.toString('base64') })));
    migrate(db);
  }).immediate();
}

/**
 * Schema 2, the key id index: `key_ids` maps HMAC(key id) to the row of each key answering to it.
 * Filling it needs the passphrase and OpenPGP parsing, so the migration itself only queues every
 * existing row in `key_ids_pending` (one statement); the indexer empties the queue. The triggers
 * queue every row that any version of the EKM writes, so a database that a previous version wrote
 * to in between (a rollback) is caught up too, and drop a deleted row's entries whoever deleted it.
 * Runs on the write connection only: a store opened read-only stays at the schema it has.
 */
function migrate(db: Database.Database): void {
  const row = db.prepare("SELECT value FROM meta WHERE name = 'schema'").get() as { value: Buffer } | undefined;
  const version = row === undefined ? 1 : Number(row.value.toString());
  if (version >= SCHEMA_VERSION) return;
  db.exec(`
    CREATE TABLE IF NOT EXISTS key_ids (tag BLOB NOT NULL, key INTEGER NOT NULL, PRIMARY KEY (tag, key)) STRICT, WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS key_ids_key ON key_ids (key);
    CREATE TABLE IF NOT EXISTS key_ids_pending (key INTEGER PRIMARY KEY) STRICT;
    CREATE TRIGGER IF NOT EXISTS keys_queue_insert AFTER INSERT ON keys BEGIN
      INSERT OR IGNORE INTO key_ids_pending (key) VALUES (NEW.id);
    END;
    CREATE TRIGGER IF NOT EXISTS keys_queue_update AFTER UPDATE OF record ON keys BEGIN
      DELETE FROM key_ids WHERE key = OLD.id;
      INSERT OR IGNORE INTO key_ids_pending (key) VALUES (NEW.id);
    END;
    CREATE TRIGGER IF NOT EXISTS keys_drop_ids AFTER DELETE ON keys BEGIN
      DELETE FROM key_ids WHERE key = OLD.id;
      DELETE FROM key_ids_pending WHERE key = OLD.id;
    END;
    INSERT OR IGNORE INTO key_ids_pending (key) SELECT id FROM keys;
  `);
  db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES ('schema', ?)").run(Buffer.from(String(SCHEMA_VERSION)));
}

function readMeta(db: Database.Database, files: DbFiles): Map<string, Buffer> {
  try {
    const rows = db.prepare('SELECT name, value FROM meta').all() as { name: string; value: Buffer }[];
    return new Map(rows.map((r) => [r.name, r.value]));
  } catch (e) {
    if (describeSqliteError(e) === 'SQLITE_ERROR') throw new ConfigError(`${files.db} is not an EKM database (it has no meta table)`);
    throw unreadable(e, files);
  }
}

/** The keys the passphrase gives; `checked` when a stored key-check value confirmed them. */
function unlock(meta: Map<string, Buffer>, config: EncryptedDbStoreConfig, derived?: Keys): { keys: Keys; checked: boolean } {
  const file = join(config.folder, DB_FILE_NAME);
  const kdf = meta.get('kdf');
  if (meta.get('format')?.toString() !== FORMAT_VERSION || kdf === undefined) {
    throw new ConfigError(`${file} is not an EKM database of a format this version reads`);
  }
  const keys = derived ?? deriveKeys(kdf, config);
  const check = meta.get('check');
  if (check === undefined) return { keys, checked: false };
  const opened = open(keys.encryption, check.subarray(0, 12), check.subarray(12), Buffer.alloc(0));
  if (opened === undefined || !timingSafeEqual(opened, CHECK_PLAINTEXT)) {
    throw new ConfigError(
      `store.db.encryption.key does not open the database in ${config.folder}: wrong passphrase (nothing was changed)`,
    );
  }
  return { keys, checked: true };
}

function deriveKeys(kdf: Buffer, config: EncryptedDbStoreConfig): Keys {
  const params = JSON.parse(kdf.toString()) as { N: number; r: number; p: number; maxmem: number; salt: string };
  const master = scryptSync(config.encryptionKey, Buffer.from(params.salt, 'base64'), 32, {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: params.maxmem,
  });
  return {
    encryption: Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'ekm record encryption', 32)),
    index: Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'ekm index hmac', 32)),
  };
}

/** Unlocks through the write connection, storing the key-check value the first time. */
function unlockAndSetCheck(db: Database.Database, files: DbFiles, config: EncryptedDbStoreConfig, derived?: Keys): Keys {
  const unlocked = unlock(readMeta(db, files), config, derived);
  if (unlocked.checked) return unlocked.keys;
  const iv = randomBytes(12);
  try {
    db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)').run('check', Buffer.concat([iv, seal(unlocked.keys.encryption, iv, CHECK_PLAINTEXT, Buffer.alloc(0))]));
  } catch (e) {
    const failure = sqliteWriteFailure(e, files.folder, files.all);
    throw new StoreUnavailableError(`Cannot store the key-check value in ${files.db}: ${failure?.details ?? describeSqliteError(e)}`);
  }
  // Another process may have won the race with its own check value: verify whatever is stored.
  const stored = unlock(readMeta(db, files), config, unlocked.keys);
  return stored.keys;
}

function seal(key: Buffer, iv: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** undefined when the ciphertext, tag or AAD was tampered with or the key is wrong. */
function open(key: Buffer, iv: Buffer, sealed: Buffer, aad: Buffer): Buffer | undefined {
  if (sealed.length < 16) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** SQLite's error code only: never the statement's parameters. */
function describeSqliteError(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : e instanceof Error ? e.message : 'unknown error';
}

function readStatements(db: Database.Database) {
  return {
    probe: db.prepare("SELECT value FROM meta WHERE name = 'check'"),
    byOwner: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE owner = ? ORDER BY id'),
    page: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE id > ? ORDER BY id LIMIT 200'),
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
    count: db.prepare('SELECT count(*) FROM keys').pluck(),
    lastKey: db.prepare('SELECT max(id) FROM keys').pluck(),
  };
}

/**
 * The key id index's statements on the read connection, or undefined while the database has no
 * index: schema 1, opened read-only, so never migrated (see migrate).
 */
function keyIdReadStatements(db: Database.Database) {
  const hasIndex = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_ids_pending'").pluck().get() !== undefined;
  if (!hasIndex) return undefined;
  return {
    byKeyId: db.prepare('SELECT k.id, k.owner, k.fp, k.iv, k.record FROM key_ids i JOIN keys k ON k.id = i.key WHERE i.tag = ? ORDER BY k.id'),
    anyPending: db.prepare('SELECT EXISTS (SELECT 1 FROM key_ids_pending)').pluck(),
    pending: db.prepare('SELECT k.id, k.owner, k.fp, k.iv, k.record FROM key_ids_pending p JOIN keys k ON k.id = p.key WHERE p.key >= ? ORDER BY p.key LIMIT ?'),
  };
}

function writeStatements(db: Database.Database) {
  return {
    byOwner: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE owner = ? ORDER BY id'),
    byFp: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE fp = ?'),
    insert: db.prepare('INSERT INTO keys (owner, fp, iv, record) VALUES (?, ?, ?, ?)'),
    update: db.prepare('UPDATE keys SET iv = ?, record = ? WHERE id = ?'),
    delete: db.prepare('DELETE FROM keys WHERE owner = ? AND fp = ?'),
    writeProbe: db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES ('write-probe', randomblob(8))"),
    ivOf: db.prepare('SELECT iv FROM keys WHERE id = ?').pluck(),
    addKeyId: db.prepare('INSERT OR IGNORE INTO key_ids (tag, key) VALUES (?, ?)'),
    indexed: db.prepare('DELETE FROM key_ids_pending WHERE key = ?'),
  };
}

interface Connection<S> {
  readonly db: Database.Database;
  readonly statements: S;
}

/**
 * Two connections: reads go through a read-only one, which works whether or not the filesystem
 * lets the store write; writes through a read-write one, absent while writes are impossible. Its
 * data_version also changes with this process's own writes, so RecentReads needs no special case.
 */
class EncryptedDbStore implements Store {
  readonly type = 'EncryptedDbStore';
  private reader: Connection<ReturnType<typeof readStatements>>;
  private writer: Connection<ReturnType<typeof writeStatements>> | undefined;
  /** Why the last write failed, until one succeeds. */
  private writeFailure: StoreReadOnlyError | undefined;
  private lastWriterAttempt = 0;
  private lastWriteCheck = 0;
  private readonly recent = new RecentReads();
  /** The read connection's key id statements, once its database has the index. */
  private keyIdReads: ReturnType<typeof keyIdReadStatements>;
  private indexer: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly files: DbFiles,
    reader: Database.Database,
    private readonly keys: Keys,
    writer: Database.Database | StoreReadOnlyError,
    private readonly logger: Logger,
  ) {
    this.reader = { db: reader, statements: readStatements(reader) };
    if (writer instanceof StoreReadOnlyError) {
      this.writeFailure = writer;
      this.lastWriterAttempt = performance.now();
    } else {
      this.writer = { db: writer, statements: writeStatements(writer) };
    }
  }

  async probe(): Promise<void> {
    this.run(() => {
      const row = this.reader.statements.probe.get() as { value: Buffer } | undefined;
      if (row === undefined) throw new StoreUnavailableError('The key-check record is missing');
      const plain = open(this.keys.encryption, row.value.subarray(0, 12), row.value.subarray(12), Buffer.alloc(0));
      if (plain === undefined) throw new StoreUnavailableError('The key-check record failed its integrity check');
    });
  }

  /**
   * Whether a write can succeed now, asked of the filesystem (read-only, permission, room for a
   * byte) and, after a failed write, of SQLite with a one-row write; either at most once per
   * WRITE_CHECK_INTERVAL_MS, the last answer standing in between. So /health sees writes fail
   * before anyone's PUT does, and come back without one.
   */
  async probeWrites(): Promise<'up'> {
    const writer = this.writable();
    if (performance.now() - this.lastWriteCheck < WRITE_CHECK_INTERVAL_MS) {
      if (this.writeFailure !== undefined) throw this.writeFailure;
      return 'up';
    }
    this.lastWriteCheck = performance.now();
    const failure = folderWriteFailure(this.files.folder, this.files.all);
    if (failure !== undefined) throw this.writeFailed(failure);
    if (this.writeFailure !== undefined) this.write(() => writer.statements.writeProbe.run());
    return 'up';
  }

  async listByEmail(email: string): Promise<StoredKey[]> {
    return this.run(() => {
      this.recent.forgetIfChanged(this.reader.statements.dataVersion.get() as number);
      const known = this.recent.get(email);
      if (known !== undefined) return [...known];
      const keys = (this.reader.statements.byOwner.all(this.hash('email', email)) as KeyRow[]).map((r) => this.decrypt(r));
      this.recent.set(email, keys);
      return [...keys];
    });
  }

  async listByKeyId(id: string): Promise<StoredKey[]> {
    return this.run(() => {
      const statements = this.keyIdIndex();
      // Until every row is indexed an answer could miss a key: a 503, never a short list.
      if (statements?.anyPending.get() !== 0) {
        this.startIndexer();
        if (this.writeFailure === undefined) throw new KeyIdIndexBuildingError();
        throw new StoreUnavailableError(
          `The key id index is incomplete and cannot be completed while the store cannot be written: ${this.writeFailure.details}`,
        );
      }
      return (statements.byKeyId.all(this.hash('keyid', id)) as KeyRow[]).map((r) => this.decrypt(r));
    });
  }

  async upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    // Computed before the write connection is taken: it may be gone after the await.
    const idTags = (await keyIdsOf(key.fingerprint, key.publicKey)).map((id) => this.hash('keyid', id));
    const { db, statements } = this.writable();
    const owner = this.hash('email', key.email);
    const fp = this.hash('fingerprint', key.fingerprint);
    return this.write(() =>
      db
        .transaction((): UpsertResult => {
          const existing = statements.byFp.get(fp) as KeyRow | undefined;
          if (existing !== undefined && !existing.owner.equals(owner)) throw new FingerprintConflictError();
          if (existing !== undefined) {
            const old = this.decrypt(existing);
            if (old.privateKey === key.privateKey && old.publicKey === key.publicKey) return 'unchanged';
          }
          // Inside the IMMEDIATE transaction, which holds SQLite's write lock: no other worker, host
          // sharing the file or --import can add a key between this count and the insert.
          if (limits !== undefined) checkOwnerKeyLimits((statements.byOwner.all(owner) as KeyRow[]).map((r) => this.decrypt(r)), key, limits);
          const iv = randomBytes(12);
          const record = seal(this.keys.encryption, iv, Buffer.from(JSON.stringify(toRecord(key))), aad(owner, fp));
          // The triggers queue the row and drop its old ids; its new ids go in with it.
          const id = existing === undefined ? Number(statements.insert.run(owner, fp, iv, record).lastInsertRowid) : existing.id;
          if (existing !== undefined) statements.update.run(iv, record, id);
          addKeyIds(statements, id, idTags);
          return existing === undefined ? 'added' : 'updated';
        })
        .immediate(),
    );
  }

  async count(): Promise<number> {
    return this.run(() => this.reader.statements.count.get() as number);
  }

  async delete(email: string, fingerprint: string): Promise<boolean> {
    const { statements } = this.writable();
    return this.write(() => statements.delete.run(this.hash('email', email), this.hash('fingerprint', fingerprint)).changes > 0);
  }

  async *all(): AsyncIterable<StoredKey> {
    let after = 0;
    for (;;) {
      const rows = this.run(() => this.reader.statements.page.all(after) as KeyRow[]);
      if (rows.length === 0) return;
      for (const row of rows) yield this.decrypt(row);
      after = rows[rows.length - 1]!.id;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.indexer?.catch(() => undefined);
    this.recent.clear();
    if (this.writer !== undefined) {
      // Everything into the database file, so that a copy of it alone is whole; best effort and
      // without waiting, as other workers may be reading.
      try {
        this.writer.db.pragma('busy_timeout = 0');
        this.writer.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // busy or unwritable: the -wal keeps the commits, which are durable there too
      }
      this.writer.db.close();
    }
    // The read-only connection closes last, so SQLite leaves the -wal and -shm files in place: a
    // later start on a read-only filesystem can read the database only with them.
    this.reader.db.close();
  }

  /** Whether the write connection is open (writes may still fail; see write()). */
  canWrite(): boolean {
    return this.writer !== undefined;
  }

  /**
   * Indexes up to `limit` queued rows, a batch per transaction, from row `from` on and then from the
   * start; resolves, with where to go on from, when the queue is empty or the limit reached. A row
   * rewritten while its ids were computed stays queued for the next batch. Writes through the
   * write connection like any write: throws StoreReadOnlyError, before parsing anything, while the
   * store cannot be written, and a write failure puts the store in read-only mode (reads go on).
   */
  async indexPending(limit: number, from = 0): Promise<number> {
    for (let done = 0; done < limit && !this.closed; ) {
      this.writable();
      const rows = this.run(() => this.keyIdIndex()?.pending.all(from, Math.min(INDEX_BATCH, limit - done)) as KeyRow[] | undefined) ?? [];
      if (rows.length === 0 && from > 0) {
        from = 0;
        continue;
      }
      if (rows.length === 0) return from;
      from = rows[rows.length - 1]!.id + 1;
      const indexed = await Promise.all(
        rows.map(async (row) => {
          const key = this.decrypt(row);
          return { row, tags: (await keyIdsOf(key.fingerprint, key.publicKey)).map((id) => this.hash('keyid', id)) };
        }),
      );
      // close() may have run during the awaits above; the loop's check narrowed the flag to false.
      if (this.closed as boolean) return from;
      const { db, statements } = this.writable();
      this.write(() =>
        db
          .transaction(() => {
            for (const { row, tags } of indexed) {
              const iv = statements.ivOf.get(row.id) as Buffer | undefined;
              if (iv?.equals(row.iv)) addKeyIds(statements, row.id, tags);
            }
          })
          .immediate(),
      );
      done += rows.length;
    }
    return from;
  }

  /**
   * Starts the background indexer unless it runs; it stops when the queue is empty, when the store
   * cannot be written (the next key id lookup starts it again) or on a failure (logged).
   */
  startIndexer(): void {
    if (this.closed) return;
    this.indexer ??= (async () => {
      // Throws while the store cannot be written; when that has passed, it reopens the write
      // connection, which gives a database opened read-only at schema 1 its index.
      this.writable();
      // Each worker starts somewhere else in the queue, so several of them share the work.
      let from = Math.floor(Math.random() * ((this.run(() => this.reader.statements.lastKey.get()) as number | null) ?? 0));
      while (!this.closed && this.run(() => this.keyIdIndex()?.anyPending.get()) === 1) {
        from = await this.indexPending(INDEX_BATCH, from);
        // Not unref'd: close() waits for the indexer, which must get past its pause to see `closed`.
        await new Promise((resolve) => setTimeout(resolve, INDEX_PAUSE_MS));
      }
    })()
      .catch((e: unknown) => {
        // Read-only: /health and every write already say so, and lookups answer 503 naming it.
        if (e instanceof StoreReadOnlyError) return;
        this.logger.warn('Indexing key ids failed; retried by the next key id lookup', { error: e instanceof Error ? e.message : 'unknown error' });
      })
      .finally(() => {
        this.indexer = undefined;
      });
  }

  /** The read connection's key id statements; undefined while its database has no index yet. */
  private keyIdIndex(): ReturnType<typeof keyIdReadStatements> {
    this.keyIdReads ??= keyIdReadStatements(this.reader.db);
    return this.keyIdReads;
  }

  /**
   * The write connection, opened again (at most once per WRITER_RETRY_MS) when writes were
   * impossible; throws the reason while they still are.
   */
  private writable(): Connection<ReturnType<typeof writeStatements>> {
    if (this.writer !== undefined) return this.writer;
    if (performance.now() - this.lastWriterAttempt >= WRITER_RETRY_MS) {
      this.lastWriterAttempt = performance.now();
      this.writeFailure = folderWriteFailure(this.files.folder, this.files.all) ?? this.reconnect();
      if (this.writeFailure === undefined) return this.writer!;
    }
    throw this.writeFailure!;
  }

  /**
   * Both connections anew, once the filesystem takes writes again; the reason when SQLite still
   * cannot write. The reader goes first: SQLite shares one mapping of the -shm among a process's
   * connections, and a reader that opened on a read-only filesystem mapped it read-only, which
   * would leave the new writer read-only too.
   */
  private reconnect(): StoreReadOnlyError | undefined {
    this.reader.db.close();
    let writer: Database.Database | StoreReadOnlyError;
    try {
      writer = openWriter(this.files);
    } finally {
      const reader = openReader(this.files);
      this.reader = { db: reader, statements: readStatements(reader) };
      this.keyIdReads = undefined;
      this.recent.clear();
    }
    if (writer instanceof StoreReadOnlyError) return writer;
    this.writer = { db: writer, statements: writeStatements(writer) };
    return undefined;
  }

  /**
   * Runs a write. A failure the filesystem explains becomes StoreReadOnlyError; a read-only or
   * forbidden filesystem also drops the write connection, to be opened again once it is writable.
   */
  private write<T>(op: () => T): T {
    // This connection's own commits change the reader's data_version, but a failed write must not
    // leave anything cached either.
    this.recent.clear();
    try {
      const result = this.run(op);
      this.writeFailure = undefined;
      return result;
    } catch (e) {
      const failure = e instanceof StoreReadOnlyError ? e : sqliteWriteFailure((e as Error).cause, this.files.folder, this.files.all);
      if (failure === undefined) throw e;
      throw this.writeFailed(failure);
    }
  }

  private writeFailed(failure: StoreReadOnlyError): StoreReadOnlyError {
    this.writeFailure = failure;
    this.lastWriterAttempt = performance.now();
    if (failure.reason !== 'disk-full' && this.writer !== undefined) {
      this.writer.db.close();
      this.writer = undefined;
    }
    return failure;
  }

  private hash(kind: 'email' | 'fingerprint' | 'keyid', value: string): Buffer {
    return createHmac('sha256', this.keys.index).update(`${kind}:${value}`).digest();
  }

  private decrypt(row: KeyRow): StoredKey {
    const plain = open(this.keys.encryption, row.iv, row.record, aad(row.owner, row.fp));
    const parsed = plain === undefined ? undefined : parseRecord(plain);
    if (parsed === undefined) {
      throw new StoreUnavailableError(`Stored record ${row.id} failed its integrity check; the database may be damaged or tampered with`);
    }
    return Object.freeze({ email: parsed.e, fingerprint: parsed.f, privateKey: parsed.k, publicKey: parsed.p });
  }

  /** Runs a database operation; SQLite failures become 503s naming only SQLite's error code. */
  private run<T>(op: () => T): T {
    try {
      return op();
    } catch (e) {
      // Errors with an answer of their own (503, 409, the per-user limits' 400) pass as they are.
      if (e instanceof EkmError) throw e;
      throw new StoreUnavailableError(`Database error: ${describeSqliteError(e)}`, { cause: e });
    }
  }
}

/**
 * The keys read for recently seen owners, so that a client fetching its key again skips the SQLite
 * read, the AES-GCM open and the JSON parse (a fifth of a key fetch's CPU). It never serves what
 * the database no longer holds: SQLite's data_version changes whenever another connection (another
 * worker, an --import) commits, which forgets everything, as does any write through this
 * connection. Bounded in count and age; the worker holds the database key anyway, so decrypted
 * keys in its memory add nothing an attacker reading that memory would not have.
 */
class RecentReads {
  private readonly entries = new Map<string, { readonly keys: readonly StoredKey[]; readonly at: number }>();
  private dataVersion: number | undefined;

  /** Forgets everything unless data_version is what it was at the last call. */
  forgetIfChanged(dataVersion: number): void {
    if (dataVersion !== this.dataVersion) this.entries.clear();
    this.dataVersion = dataVersion;
  }

  get(email: string): readonly StoredKey[] | undefined {
    const entry = this.entries.get(email);
    if (entry === undefined) return undefined;
    if (performance.now() - entry.at <= RECENT_READ_MAX_AGE_MS) return entry.keys;
    this.entries.delete(email);
    return undefined;
  }

  set(email: string, keys: readonly StoredKey[]): void {
    this.entries.delete(email);
    if (this.entries.size >= RECENT_READS_MAX) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(email, { keys, at: performance.now() });
  }

  clear(): void {
    this.entries.clear();
    this.dataVersion = undefined;
  }
}

function toRecord(key: StoredKey) {
  return { e: key.email, f: key.fingerprint, k: key.privateKey, p: key.publicKey };
}

/** undefined for text that is not JSON, without the SyntaxError, whose message quotes the decrypted text. */
function parseRecord(plain: Buffer): { e: string; f: string; k: string; p: string } | undefined {
  try {
    return JSON.parse(plain.toString('utf8')) as { e: string; f: string; k: string; p: string };
  } catch {
    return undefined;
  }
}

/** Files the key of row `id` under each of its key id tags, and takes the row off the indexer's queue. */
function addKeyIds(statements: ReturnType<typeof writeStatements>, id: number, tags: readonly Buffer[]): void {
  for (const tag of tags) statements.addKeyId.run(tag, id);
  statements.indexed.run(id);
}

/** Binds a record to its row: a ciphertext moved to another owner or fingerprint fails to open. */
function aad(owner: Buffer, fp: Buffer): Buffer {
  return Buffer.concat([Buffer.from('ekm-key-v1'), owner, fp]);
}
