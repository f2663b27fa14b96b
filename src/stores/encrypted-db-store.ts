import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { EncryptedDbStoreConfig } from '../config/config.js';
import { ConfigError, EkmError, FingerprintConflictError, KeyIdIndexBuildingError, StoreReadOnlyError, StoreUnavailableError } from '../errors.js';
import { keyIdsOf } from '../keys/key-ids.js';
import type { Logger } from '../logging/logger.js';
import {
  finishRotation,
  learnNext,
  newKdf,
  opensNext,
  parseKdf,
  parseKeyring,
  startRotation,
  unlockWithPassphrase,
  wrongPassphrase,
  type GenerationKeys,
  type KeyringDoc,
} from './db-keyring.js';
import { checkOwnerKeyLimits, type OwnerKeyLimits } from './owner-key-limits.js';
import type { InventoryEntry, RotationProgress, RotationReport, Store, StoreDependencies, StoredKey, UpsertResult } from './store.js';
import { errnoWriteFailure, folderWriteFailure, sqliteWriteFailure } from './write-failure.js';

/** The database file inside `store.db.folder`. */
export const DB_FILE_NAME = 'ekm.sqlite';
const FORMAT_VERSION = '1';
/**
 * The schema within format 1, raised only by additive changes that a previous version keeps working
 * with (it ignores columns and tables it does not know); see MIGRATIONS.
 */
const SCHEMA_VERSION = 3;
/** Records the key id indexer reads, decrypts and parses per transaction (a few ms each). */
const INDEX_BATCH = 50;
/** The serving indexer's pause between batches, so requests keep the database and the CPU. */
const INDEX_PAUSE_MS = 20;
const CHECK_PLAINTEXT = Buffer.from('flowcrypt-ekm key check v1');
/** How long a statement waits for another process's write lock before the request gets a 503. */
const BUSY_TIMEOUT_MS = 3000;
/**
 * Recent reads a process keeps: at most this many owners' keys, each for at most this long, and
 * only while no connection has committed anything since (see RecentReads).
 */
const RECENT_READS_MAX = 1000;
const RECENT_READ_MAX_AGE_MS = 60_000;

/** How often a process looks for a key rotation another process started, when nothing else made it look. */
const KEYRING_POLL_MS = 1000;
/**
 * A rotation ends no sooner than this after it started, so that every running process has seen the
 * new generation (KEYRING_POLL_MS) before the old one's wrap is gone.
 */
const ROTATION_GRACE_MS = 5000;
/** Rows re-encrypted per transaction: a few ms of the write lock each. */
const ROTATION_BATCH = 200;

interface KeyRow {
  readonly id: number;
  readonly owner: Buffer;
  readonly fp: Buffer;
  readonly iv: Buffer;
  readonly record: Buffer;
  /** When the row was last written (ms since the epoch); null for rows written before schema 3. */
  readonly written?: number | null;
  /** The key generation that encrypted the record and hashed its owner and fingerprint (db-keyring.ts). */
  readonly gen: number;
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
      return new EncryptedDbStore(files, reader, unlocked!, writer, logger);
    }
    try {
      const keys = unlocked?.checked ? unlocked : unlockAndSetCheck(writer, files, config, unlocked);
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
    const insert = db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)');
    insert.run('format', Buffer.from(FORMAT_VERSION));
    insert.run('kdf', Buffer.from(JSON.stringify(newKdf())));
    migrate(db);
  }).immediate();
}

/**
 * Each schema step, applied in order to a database whose `schema` (absent: 1) is below it; every
 * step is also safe to apply twice. 3: `keys.written`, when each row was last written, for
 * `--list` (rows written before it stay NULL: nobody knows when they were written), in the clear
 * like the row order already is: it tells when, never who or what; and `keys.gen`, the key
 * generation of the row (0 before any rotation, see db-keyring.ts).
 */
const MIGRATIONS: readonly { readonly version: number; readonly apply: (db: Database.Database) => void }[] = [
  {
    // The key id index: `key_ids` maps HMAC(key id) to the row of each key answering to it. Filling
    // it needs the passphrase and OpenPGP parsing, so the migration itself only queues every existing
    // row in `key_ids_pending` (one statement); the indexer empties the queue. The triggers queue
    // every row that any version of the EKM writes, so a database that a previous version wrote to in
    // between (a rollback) is caught up too, and drop a deleted row's entries whoever deleted it.
    version: 2,
    apply: (db) =>
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
      `),
  },
  {
    version: 3,
    apply: (db) => {
      if (!hasColumn(db, 'keys', 'written')) db.exec('ALTER TABLE keys ADD COLUMN written INTEGER');
      if (!hasColumn(db, 'keys', 'gen')) db.exec('ALTER TABLE keys ADD COLUMN gen INTEGER NOT NULL DEFAULT 0');
      db.exec('CREATE INDEX IF NOT EXISTS keys_gen ON keys (gen, id)');
    },
  },
];

/**
 * Runs inside initialise's IMMEDIATE transaction, so concurrent starts migrate once; on the write
 * connection only: a store opened read-only stays at the schema it has.
 */
function migrate(db: Database.Database): void {
  const row = db.prepare("SELECT value FROM meta WHERE name = 'schema'").get() as { value: Buffer } | undefined;
  const version = row === undefined ? 1 : Number(row.value.toString());
  if (version >= SCHEMA_VERSION) return;
  for (const step of MIGRATIONS) if (version < step.version) step.apply(db);
  db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES ('schema', ?)").run(Buffer.from(String(SCHEMA_VERSION)));
}

function hasColumn(db: Database.Database, table: string, column: string): boolean {
  return (db.prepare(`SELECT name FROM pragma_table_info('${table}')`).pluck().all() as string[]).includes(column);
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

/** What the passphrase opens: its generations (the newest last) and the keyring they came from. */
interface Unlocked {
  readonly gens: readonly GenerationKeys[];
  readonly keyring: Buffer | undefined;
  /** A stored key-check value confirmed them (always, once the database has been written once). */
  readonly checked: boolean;
}

/** The keys the passphrase gives; `derived` when they were derived already from the same keyring. */
function unlock(meta: Map<string, Buffer>, config: EncryptedDbStoreConfig, derived?: Unlocked): Unlocked {
  const file = join(config.folder, DB_FILE_NAME);
  const kdf = meta.get('kdf');
  if (meta.get('format')?.toString() !== FORMAT_VERSION || kdf === undefined) {
    throw new ConfigError(`${file} is not an EKM database of a format this version reads`);
  }
  const keyring = meta.get('keyring');
  const same = derived !== undefined && (derived.keyring === undefined ? keyring === undefined : keyring !== undefined && derived.keyring.equals(keyring));
  const gens = same ? derived.gens : unlockWithPassphrase(config.encryptionKey, parseKdf(kdf), parseKeyring(keyring));
  if (gens === undefined) throw wrongPassphrase(config.folder);
  const check = meta.get('check');
  if (check === undefined) return { gens, keyring, checked: false };
  // The check value is sealed under the keyring's current generation, the first one.
  const opened = open(gens[0]!.encryption, check.subarray(0, 12), check.subarray(12), Buffer.alloc(0));
  if (opened === undefined || !timingSafeEqual(opened, CHECK_PLAINTEXT)) throw wrongPassphrase(config.folder);
  return { gens, keyring, checked: true };
}

/** Unlocks through the write connection, storing the key-check value the first time. */
function unlockAndSetCheck(db: Database.Database, files: DbFiles, config: EncryptedDbStoreConfig, derived?: Unlocked): Unlocked {
  const unlocked = unlock(readMeta(db, files), config, derived);
  if (unlocked.checked) return unlocked;
  try {
    db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)').run('check', checkValue(unlocked.gens[0]!));
  } catch (e) {
    const failure = sqliteWriteFailure(e, files.folder, files.all);
    throw new StoreUnavailableError(`Cannot store the key-check value in ${files.db}: ${failure?.details ?? describeSqliteError(e)}`);
  }
  // Another process may have won the race with its own check value: verify whatever is stored.
  return unlock(readMeta(db, files), config, unlocked);
}

function checkValue(keys: GenerationKeys): Buffer {
  const iv = randomBytes(12);
  return Buffer.concat([iv, seal(keys.encryption, iv, CHECK_PLAINTEXT, Buffer.alloc(0))]);
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

const ROW = 'id, owner, fp, iv, record, gen';

function readStatements(db: Database.Database) {
  // A read-only start on a database no writer has migrated yet: it has neither column.
  const migrated = hasColumn(db, 'keys', 'gen');
  const row = migrated ? `${ROW}, written` : 'id, owner, fp, iv, record, 0 AS gen, NULL AS written';
  return {
    meta: db.prepare('SELECT value FROM meta WHERE name = ?').pluck(),
    // Two owner hashes: one per key generation while a rotation runs (the same one twice otherwise).
    byOwner: db.prepare(`SELECT ${row} FROM keys WHERE owner IN (?, ?) ORDER BY id`),
    page: db.prepare(`SELECT ${row} FROM keys WHERE id > ? ORDER BY id LIMIT 200`),
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
    count: db.prepare('SELECT count(*) FROM keys').pluck(),
    lastKey: db.prepare('SELECT max(id) FROM keys').pluck(),
    /** One read transaction (a WAL snapshot) around `op`; made once, as it is on every key fetch's path. */
    snapshot: db.transaction((op: () => unknown) => op()),
  };
}

/**
 * The key id index's statements on the read connection, or undefined while the database has no
 * index: schema 1, opened read-only, so never migrated (see migrate).
 */
function keyIdReadStatements(db: Database.Database) {
  const hasIndex = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_ids_pending'").pluck().get() !== undefined;
  if (!hasIndex) return undefined;
  const row = hasColumn(db, 'keys', 'gen') ? 'k.id, k.owner, k.fp, k.iv, k.record, k.gen' : 'k.id, k.owner, k.fp, k.iv, k.record, 0 AS gen';
  return {
    // Two tags: one per key generation while a rotation runs (the same one twice otherwise).
    byKeyId: db.prepare(`SELECT DISTINCT ${row} FROM key_ids i JOIN keys k ON k.id = i.key WHERE i.tag IN (?, ?) ORDER BY k.id`),
    anyPending: db.prepare('SELECT EXISTS (SELECT 1 FROM key_ids_pending)').pluck(),
    pending: db.prepare(`SELECT ${row} FROM key_ids_pending p JOIN keys k ON k.id = p.key WHERE p.key >= ? ORDER BY p.key LIMIT ?`),
  };
}

function writeStatements(db: Database.Database) {
  return {
    meta: db.prepare('SELECT value FROM meta WHERE name = ?').pluck(),
    setMeta: db.prepare('INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)'),
    byOwner: db.prepare(`SELECT ${ROW} FROM keys WHERE owner IN (?, ?) ORDER BY id`),
    byFp: db.prepare(`SELECT ${ROW} FROM keys WHERE fp IN (?, ?)`),
    insert: db.prepare('INSERT INTO keys (owner, fp, iv, record, written, gen) VALUES (?, ?, ?, ?, ?, ?)'),
    update: db.prepare('UPDATE keys SET owner = ?, fp = ?, iv = ?, record = ?, written = ?, gen = ? WHERE id = ?'),
    rekey: db.prepare('UPDATE keys SET owner = ?, fp = ?, iv = ?, record = ?, gen = ? WHERE id = ? AND iv = ?'),
    delete: db.prepare('DELETE FROM keys WHERE (owner = ? AND fp = ?) OR (owner = ? AND fp = ?)'),
    notIn: db.prepare(`SELECT ${ROW} FROM keys WHERE gen != ? ORDER BY id LIMIT ?`),
    countNotIn: db.prepare('SELECT count(*) FROM keys WHERE gen != ?').pluck(),
    count: db.prepare('SELECT count(*) FROM keys').pluck(),
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
 * The key generations this process holds (db-keyring.ts) and the keyring row they were learnt
 * from: `current` is the keyring's current generation, `write` the newest (a rotation's new one),
 * which every write uses.
 */
class Ring {
  private readonly gens = new Map<number, GenerationKeys>();
  current: number;
  write: number;

  constructor(
    gens: readonly GenerationKeys[],
    private raw: Buffer | undefined,
  ) {
    for (const g of gens) this.gens.set(g.gen, g);
    this.current = gens[0]!.gen;
    this.write = gens[gens.length - 1]!.gen;
  }

  /**
   * Takes the keyring row as read now: learns a rotation's new generation from the current one,
   * forgets generations no longer in use. Throws StoreUnavailableError when the keyring moved on
   * past what this process can follow (it slept through a whole rotation): it needs the new passphrase.
   */
  update(raw: Buffer | undefined): void {
    if (raw === undefined ? this.raw === undefined : this.raw?.equals(raw) === true) return;
    const doc = parseKeyring(raw)!;
    const current = this.gens.get(doc.current.gen);
    if (current === undefined) {
      throw new StoreUnavailableError(
        'The database key was rotated while this process did not look: restart it with the new passphrase (store.db.encryption.key)',
      );
    }
    if (doc.next !== undefined && !this.gens.has(doc.next.gen)) this.gens.set(doc.next.gen, learnNext(doc, current));
    for (const gen of this.gens.keys()) if (gen !== doc.current.gen && gen !== doc.next?.gen) this.gens.delete(gen);
    this.current = doc.current.gen;
    this.write = doc.next?.gen ?? doc.current.gen;
    this.raw = raw;
  }

  get(gen: number): GenerationKeys | undefined {
    return this.gens.get(gen);
  }

  /** Every generation held: one, or two while a rotation runs. */
  all(): GenerationKeys[] {
    return [...this.gens.values()];
  }

  /** The keyring as last read (for the rotation, which starts from it). */
  doc(): KeyringDoc | undefined {
    return parseKeyring(this.raw);
  }
}

/**
 * Two connections: reads go through a read-only one, which works whether or not the filesystem
 * lets the store write; writes through a read-write one, absent while writes are impossible. Its
 * data_version also changes with this process's own writes, so RecentReads needs no special case.
 *
 * Every read runs in one read transaction (a WAL snapshot) that first reads the keyring row, and
 * every write in an IMMEDIATE transaction that does the same: so a process learns a key rotation
 * before it could miss a row the rotation moved to the new generation, and never writes a
 * fingerprint a second time under the other generation's hash.
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
  private readonly ring: Ring;
  private readonly poll: NodeJS.Timeout;
  private lastPolledVersion: number | undefined;
  /** The read connection's key id statements, once its database has the index. */
  private keyIdReads: ReturnType<typeof keyIdReadStatements>;
  private indexer: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly files: DbFiles,
    reader: Database.Database,
    unlocked: Unlocked,
    writer: Database.Database | StoreReadOnlyError,
    private readonly logger: Logger,
  ) {
    this.ring = new Ring(unlocked.gens, unlocked.keyring);
    this.reader = { db: reader, statements: readStatements(reader) };
    if (writer instanceof StoreReadOnlyError) {
      this.writeFailure = writer;
      this.lastWriterAttempt = performance.now();
    } else {
      this.setWriter(writer);
    }
    // An idle process learns a rotation's new generation too, before the rotation ends.
    this.poll = setInterval(() => this.pollKeyring(), KEYRING_POLL_MS).unref();
  }

  async probe(): Promise<void> {
    this.read(() => {
      const value = this.reader.statements.meta.get('check') as Buffer | undefined;
      if (value === undefined) throw new StoreUnavailableError('The key-check record is missing');
      const plain = open(this.ring.get(this.ring.current)!.encryption, value.subarray(0, 12), value.subarray(12), Buffer.alloc(0));
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
    return this.read(() => {
      this.recent.forgetIfChanged(this.reader.statements.dataVersion.get() as number);
      const known = this.recent.get(email);
      if (known !== undefined) return [...known];
      const keys = (this.reader.statements.byOwner.all(...this.hashes('email', email)) as KeyRow[]).map((r) => this.decrypt(r));
      this.recent.set(email, keys);
      return [...keys];
    });
  }

  async listByKeyId(id: string): Promise<StoredKey[]> {
    return this.read(() => {
      const statements = this.keyIdIndex();
      // Until every row is indexed an answer could miss a key: a 503, never a short list.
      if (statements?.anyPending.get() !== 0) {
        this.startIndexer();
        if (this.writeFailure === undefined) throw new KeyIdIndexBuildingError();
        throw new StoreUnavailableError(
          `The key id index is incomplete and cannot be completed while the store cannot be written: ${this.writeFailure.details}`,
        );
      }
      return (statements.byKeyId.all(...this.hashes('keyid', id)) as KeyRow[]).map((r) => this.decrypt(r));
    });
  }

  async upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    // Parsed before the write connection is taken: it may be gone after the await.
    const ids = await keyIdsOf(key.fingerprint, key.publicKey);
    const { db, statements } = this.writable();
    return this.write(() =>
      db
        .transaction((): UpsertResult => {
          this.ring.update(statements.meta.get('keyring') as Buffer | undefined);
          const matches = statements.byFp.all(...this.hashes('fingerprint', key.fingerprint)) as KeyRow[];
          if (matches.length > 1) throw new StoreUnavailableError('A fingerprint is stored twice; the database may be damaged or tampered with');
          const [existing] = matches;
          if (existing !== undefined && !existing.owner.equals(this.hash(this.keysOf(existing), 'email', key.email))) throw new FingerprintConflictError();
          if (existing !== undefined) {
            const old = this.decrypt(existing);
            if (old.privateKey === key.privateKey && old.publicKey === key.publicKey) return 'unchanged';
          }
          // Inside the IMMEDIATE transaction, which holds SQLite's write lock: no other worker, host
          // sharing the file or --import can add a key between this count and the insert.
          if (limits !== undefined)
            checkOwnerKeyLimits(
              (statements.byOwner.all(...this.hashes('email', key.email)) as KeyRow[]).map((r) => this.decrypt(r)),
              key,
              limits,
            );
          const { owner, fp, iv, record, gen } = this.sealRecord(key);
          // The triggers queue the row and drop its old ids; its new ids go in with it.
          const id = existing === undefined ? Number(statements.insert.run(owner, fp, iv, record, Date.now(), gen).lastInsertRowid) : existing.id;
          if (existing !== undefined) statements.update.run(owner, fp, iv, record, Date.now(), gen, id);
          addKeyIds(statements, id, this.keyIdTags(gen, ids));
          return existing === undefined ? 'added' : 'updated';
        })
        .immediate(),
    );
  }

  async count(): Promise<number> {
    return this.read(() => this.reader.statements.count.get() as number);
  }

  async delete(email: string, fingerprint: string): Promise<boolean> {
    const { db, statements } = this.writable();
    return this.write(() =>
      db
        .transaction(() => {
          this.ring.update(statements.meta.get('keyring') as Buffer | undefined);
          const [a, b = a] = this.ring.all().map((k) => [this.hash(k, 'email', email), this.hash(k, 'fingerprint', fingerprint)] as const);
          return statements.delete.run(a![0], a![1], b![0], b![1]).changes > 0;
        })
        .immediate(),
    );
  }

  async *all(): AsyncIterable<StoredKey> {
    for await (const entry of this.inventory()) yield entry.key;
  }

  async *inventory(): AsyncIterable<InventoryEntry> {
    let after = 0;
    for (;;) {
      const entries = this.read(() =>
        (this.reader.statements.page.all(after) as KeyRow[]).map((row) => ({ id: row.id, key: this.decrypt(row), writtenAt: row.written ?? undefined })),
      );
      if (entries.length === 0) return;
      for (const { key, writtenAt } of entries) yield { key, writtenAt };
      after = entries[entries.length - 1]!.id;
    }
  }

  /**
   * `--rotate-store-key`: re-encrypts every record and re-hashes its owner and fingerprint under a
   * new key generation whose secret the new passphrase protects (db-keyring.ts), while every other
   * process goes on serving. Each step is one transaction, so a kill at any point leaves every key
   * readable (with the old passphrase, and with the new one) and running it again goes on from
   * there; it refuses a different new passphrase than the one the rotation under way was started
   * with. It ends no sooner than ROTATION_GRACE_MS after it started; then only the new passphrase
   * opens the database.
   */
  async rotateStoreKey(newSecret: string | undefined, progress: RotationProgress): Promise<RotationReport> {
    if (newSecret === undefined) throw new ConfigError('EncryptedDbStore needs the new passphrase: --new-passphrase-file=<file>');
    const keyring = () => {
      this.ring.update(this.writable().statements.meta.get('keyring') as Buffer | undefined);
      return this.ring.doc();
    };
    // scrypt (about 100 ms) outside the write lock; the transaction starts only if nobody started meanwhile.
    const before = this.read(() => this.ring.doc());
    let resumed = before?.next !== undefined;
    if (resumed && !opensNext(before!, newSecret))
      throw new ConfigError('A rotation to another new passphrase is under way: run --rotate-store-key again with the same --new-passphrase-file');
    if (!resumed) {
      const started = startRotation(before, this.ring.get(this.ring.current)!, newSecret, Date.now());
      const { db, statements } = this.writable();
      resumed = !this.write(() =>
        db
          .transaction(() => {
            const now = keyring();
            if (now?.next !== undefined) return false;
            statements.setMeta.run('keyring', Buffer.from(JSON.stringify(started.doc)));
            return true;
          })
          .immediate(),
      );
      // Another --rotate-store-key started one at the same moment: go on with it if it is ours.
      if (
        resumed &&
        !opensNext(
          this.read(() => this.ring.doc())!,
          newSecret,
        )
      )
        throw new ConfigError('Another rotation started at the same time with another new passphrase: run --rotate-store-key again with that one');
    }
    const doc = this.read(() => this.ring.doc())!;
    const target = doc.next!.gen;
    const { total, before: alreadyDone } = this.write(() => {
      const { statements } = this.writable();
      const count = statements.count.get() as number;
      return { total: count, before: count - (statements.countNotIn.get(target) as number) };
    });
    progress({ phase: resumed ? 'resumed' : 'started', generation: target, done: alreadyDone, total });
    // Records re-encrypted by this run; the progress counts every record in the new generation.
    let done = 0;
    for (;;) {
      const rows = this.write(() => this.writable().statements.notIn.all(target, ROTATION_BATCH) as KeyRow[]);
      if (rows.length === 0) {
        const wait = doc.next!.startedAt + ROTATION_GRACE_MS - Date.now();
        if (wait > 0) {
          progress({ phase: 'waiting', generation: target, done: alreadyDone + done, total, waitMs: wait });
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
        const { db, statements } = this.writable();
        const finished = this.write(() =>
          db
            .transaction(() => {
              const now = keyring()!;
              if (statements.countNotIn.get(target) !== 0) return false;
              const { doc: final, kdf } = finishRotation(now);
              statements.setMeta.run('kdf', Buffer.from(JSON.stringify(kdf)));
              statements.setMeta.run('keyring', Buffer.from(JSON.stringify(final)));
              statements.setMeta.run('check', checkValue(this.ring.get(target)!));
              return true;
            })
            .immediate(),
        );
        if (finished) break;
        continue;
      }
      // The key ids (an OpenPGP parse each) outside the write lock; a row rewritten meanwhile is
      // left as it is: its writer put it in the new generation already.
      const prepared = await Promise.all(
        rows.map(async (row) => {
          const key = this.decrypt(row);
          return { row, key, ids: await keyIdsOf(key.fingerprint, key.publicKey) };
        }),
      );
      const { db, statements } = this.writable();
      done += this.write(() =>
        db
          .transaction(() => {
            keyring();
            if (this.ring.write !== target)
              throw new StoreUnavailableError('The key rotation was finished or replaced by another process meanwhile; run --rotate-store-key again');
            let moved = 0;
            for (const { row, key, ids } of prepared) {
              const sealed = this.sealRecord(key);
              if (statements.rekey.run(sealed.owner, sealed.fp, sealed.iv, sealed.record, sealed.gen, row.id, row.iv).changes === 0) continue;
              addKeyIds(statements, row.id, this.keyIdTags(sealed.gen, ids));
              moved++;
            }
            return moved;
          })
          .immediate(),
      );
      progress({ phase: 'records', generation: target, done: alreadyDone + done, total });
    }
    const { db } = this.writable();
    this.ring.update(this.writable().statements.meta.get('keyring') as Buffer | undefined);
    // Old page images (the old keyring, records under the old key) out of the WAL; best effort,
    // as running processes may be reading. secure_delete already zeroed them in the database file.
    let checkpointed = true;
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      checkpointed = false;
    }
    return { generation: target, records: done, property: 'store.db.encryption.key', walCheckpointed: checkpointed };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.poll);
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
   * rewritten while its ids were computed (an upsert, a key rotation) stays queued or was indexed by
   * its writer. Writes through the write connection like any write: throws StoreReadOnlyError,
   * before parsing anything, while the store cannot be written, and a write failure puts the store
   * in read-only mode (reads go on).
   */
  async indexPending(limit: number, from = 0): Promise<number> {
    for (let done = 0; done < limit && !this.closed;) {
      this.writable();
      const rows = this.read(() => this.keyIdIndex()?.pending.all(from, Math.min(INDEX_BATCH, limit - done)) as KeyRow[] | undefined) ?? [];
      if (rows.length === 0 && from > 0) {
        from = 0;
        continue;
      }
      if (rows.length === 0) return from;
      from = rows[rows.length - 1]!.id + 1;
      const indexed = await Promise.all(
        rows.map(async (row) => {
          const key = this.decrypt(row);
          return { row, ids: await keyIdsOf(key.fingerprint, key.publicKey) };
        }),
      );
      // close() may have run during the awaits above; the loop's check narrowed the flag to false.
      if (this.closed as boolean) return from;
      const { db, statements } = this.writable();
      this.write(() =>
        db
          .transaction(() => {
            for (const { row, ids } of indexed) {
              const iv = statements.ivOf.get(row.id) as Buffer | undefined;
              // The tags of the row's own generation, which the iv (new on every rewrite) pins.
              if (iv?.equals(row.iv)) addKeyIds(statements, row.id, this.keyIdTags(row.gen, ids));
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

  /** The index tags of these key ids under a generation's index key. */
  private keyIdTags(gen: number, ids: readonly string[]): Buffer[] {
    const keys = this.ring.get(gen);
    if (keys === undefined) throw new StoreUnavailableError(`Key generation ${gen} is no longer held; the key rotation moved on`);
    return ids.map((id) => this.hash(keys, 'keyid', id));
  }

  private setWriter(db: Database.Database): void {
    // A rotation's superseded records and keyring are overwritten, not left in free pages.
    db.pragma('secure_delete = ON');
    this.writer = { db, statements: writeStatements(db) };
  }

  /** Between requests: reads the keyring when another connection committed anything. */
  private pollKeyring(): void {
    try {
      const version = this.reader.statements.dataVersion.get() as number;
      if (version === this.lastPolledVersion) return;
      this.lastPolledVersion = version;
      this.read(() => undefined);
    } catch {
      // The next request meets the same failure and answers it.
    }
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
    this.setWriter(writer);
    return undefined;
  }

  /** Runs a read in one snapshot that first takes the keyring as it is in that snapshot. */
  private read<T>(op: () => T): T {
    return this.run(
      () =>
        this.reader.statements.snapshot(() => {
          this.ring.update(this.reader.statements.meta.get('keyring') as Buffer | undefined);
          return op();
        }) as T,
    );
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

  /** This value's hash under each generation held, as two query parameters (the same twice outside a rotation). */
  private hashes(kind: 'email' | 'fingerprint' | 'keyid', value: string): [Buffer, Buffer] {
    const [a, b = a] = this.ring.all().map((k) => this.hash(k, kind, value));
    return [a!, b!];
  }

  private hash(keys: GenerationKeys, kind: 'email' | 'fingerprint' | 'keyid', value: string): Buffer {
    return createHmac('sha256', keys.index).update(`${kind}:${value}`).digest();
  }

  private keysOf(row: KeyRow): GenerationKeys {
    const keys = this.ring.get(row.gen);
    if (keys === undefined)
      throw new StoreUnavailableError(
        `Stored record ${row.id} is of key generation ${row.gen}, which this process does not hold: restart it with the current passphrase`,
      );
    return keys;
  }

  /** A key as a row of the newest generation held. */
  private sealRecord(key: StoredKey): { owner: Buffer; fp: Buffer; iv: Buffer; record: Buffer; gen: number } {
    const keys = this.ring.get(this.ring.write)!;
    const owner = this.hash(keys, 'email', key.email);
    const fp = this.hash(keys, 'fingerprint', key.fingerprint);
    const iv = randomBytes(12);
    return { owner, fp, iv, record: seal(keys.encryption, iv, Buffer.from(JSON.stringify(toRecord(key))), aad(owner, fp)), gen: keys.gen };
  }

  private decrypt(row: KeyRow): StoredKey {
    const plain = open(this.keysOf(row).encryption, row.iv, row.record, aad(row.owner, row.fp));
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
