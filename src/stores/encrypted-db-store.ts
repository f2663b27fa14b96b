import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { EncryptedDbStoreConfig } from '../config/config.js';
import { ConfigError, EkmError, FingerprintConflictError, StoreUnavailableError } from '../errors.js';
import { keyIdsOf } from '../keys/key-ids.js';
import type { Logger } from '../logging/logger.js';
import { checkOwnerKeyLimits, type OwnerKeyLimits } from './owner-key-limits.js';
import type { Store, StoreDependencies, StoredKey, UpsertResult } from './store.js';

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

/**
 * The embedded store: SQLite (WAL, synchronous=FULL) shared by every worker process. Nothing is on
 * disk in plaintext: each record is AES-256-GCM with its owner and fingerprint hashes as AAD; emails
 * and fingerprints are indexed by HMAC-SHA256. Keys come from the passphrase through scrypt with a
 * salt stored in the database, and a key-check value refuses a wrong passphrase before anything is
 * written.
 */
export async function openEncryptedDbStore(config: EncryptedDbStoreConfig, deps: StoreDependencies): Promise<Store> {
  const file = join(config.folder, DB_FILE_NAME);
  if (existsSync(file)) {
    // Check the passphrase on a read-only handle first: a wrong one must not touch the data.
    const ro = openDatabase(file, true);
    try {
      deriveAndCheck(ro, config);
    } finally {
      ro.close();
    }
  } else {
    try {
      mkdirSync(config.folder, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new ConfigError(`Cannot create store.db.folder ${config.folder}: ${(e as NodeJS.ErrnoException).code}`);
    }
  }
  const db = openDatabase(file, false);
  try {
    initialise(db);
    const store = new EncryptedDbStore(db, deriveAndCheck(db, config), deps.logger);
    // Operator commands index what a previous version stored before they return; a serving process
    // does it in the background in small batches, answering 503 to key id lookups meanwhile.
    if (deps.setup === true) await store.indexPending(Number.POSITIVE_INFINITY);
    else store.startIndexer();
    return store;
  } catch (e) {
    db.close();
    throw e;
  }
}

function openDatabase(file: string, readonly: boolean): Database.Database {
  try {
    const db = new Database(file, { readonly, fileMustExist: readonly, timeout: BUSY_TIMEOUT_MS });
    if (!readonly) {
      db.pragma('journal_mode = WAL');
      // FULL: a transaction is on disk when commit returns, so an answered 200 survives power loss.
      db.pragma('synchronous = FULL');
    }
    return db;
  } catch (e) {
    throw new ConfigError(`Cannot open the database ${file}: ${describeSqliteError(e)}`);
  }
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

function deriveAndCheck(db: Database.Database, config: EncryptedDbStoreConfig): Keys {
  let meta: Map<string, Buffer>;
  try {
    const rows = db.prepare('SELECT name, value FROM meta').all() as { name: string; value: Buffer }[];
    meta = new Map(rows.map((r) => [r.name, r.value]));
  } catch (e) {
    throw new ConfigError(`${join(config.folder, DB_FILE_NAME)} is not an EKM database (${describeSqliteError(e)})`);
  }
  const kdf = meta.get('kdf');
  if (meta.get('format')?.toString() !== FORMAT_VERSION || kdf === undefined) {
    throw new ConfigError(`${join(config.folder, DB_FILE_NAME)} is not an EKM database of a format this version reads`);
  }
  const params = JSON.parse(kdf.toString()) as { N: number; r: number; p: number; maxmem: number; salt: string };
  const master = scryptSync(config.encryptionKey, Buffer.from(params.salt, 'base64'), 32, {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: params.maxmem,
  });
  const keys: Keys = {
    encryption: Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'ekm record encryption', 32)),
    index: Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'ekm index hmac', 32)),
  };
  const check = meta.get('check');
  if (check === undefined) {
    const iv = randomBytes(12);
    db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)').run('check', Buffer.concat([iv, seal(keys.encryption, iv, CHECK_PLAINTEXT, Buffer.alloc(0))]));
    // Another process may have won the race with its own check value: verify whatever is stored.
    return deriveAndCheck(db, config);
  }
  const opened = open(keys.encryption, check.subarray(0, 12), check.subarray(12), Buffer.alloc(0));
  if (opened === undefined || !timingSafeEqual(opened, CHECK_PLAINTEXT)) {
    throw new ConfigError(
      `store.db.encryption.key does not open the database in ${config.folder}: wrong passphrase (nothing was changed)`,
    );
  }
  return keys;
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

class EncryptedDbStore implements Store {
  readonly type = 'EncryptedDbStore';
  private readonly statements;
  private readonly recent = new RecentReads();
  private indexer: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly db: Database.Database,
    private readonly keys: Keys,
    private readonly logger: Logger,
  ) {
    this.statements = {
      probe: db.prepare("SELECT value FROM meta WHERE name = 'check'"),
      byOwner: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE owner = ? ORDER BY id'),
      byFp: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE fp = ?'),
      insert: db.prepare('INSERT INTO keys (owner, fp, iv, record) VALUES (?, ?, ?, ?)'),
      update: db.prepare('UPDATE keys SET iv = ?, record = ? WHERE id = ?'),
      delete: db.prepare('DELETE FROM keys WHERE owner = ? AND fp = ?'),
      page: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE id > ? ORDER BY id LIMIT 200'),
      byKeyId: db.prepare('SELECT k.id, k.owner, k.fp, k.iv, k.record FROM key_ids i JOIN keys k ON k.id = i.key WHERE i.tag = ? ORDER BY k.id'),
      anyPending: db.prepare('SELECT EXISTS (SELECT 1 FROM key_ids_pending)').pluck(),
      pending: db.prepare('SELECT k.id, k.owner, k.fp, k.iv, k.record FROM key_ids_pending p JOIN keys k ON k.id = p.key WHERE p.key >= ? ORDER BY p.key LIMIT ?'),
      lastKey: db.prepare('SELECT max(id) FROM keys').pluck(),
      ivOf: db.prepare('SELECT iv FROM keys WHERE id = ?').pluck(),
      addKeyId: db.prepare('INSERT OR IGNORE INTO key_ids (tag, key) VALUES (?, ?)'),
      indexed: db.prepare('DELETE FROM key_ids_pending WHERE key = ?'),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
    };
  }

  async probe(): Promise<void> {
    this.run(() => {
      const row = this.statements.probe.get() as { value: Buffer } | undefined;
      if (row === undefined) throw new StoreUnavailableError('The key-check record is missing');
      const plain = open(this.keys.encryption, row.value.subarray(0, 12), row.value.subarray(12), Buffer.alloc(0));
      if (plain === undefined) throw new StoreUnavailableError('The key-check record failed its integrity check');
    });
  }

  async listByEmail(email: string): Promise<StoredKey[]> {
    return this.run(() => {
      this.recent.forgetIfChanged(this.statements.dataVersion.get() as number);
      const known = this.recent.get(email);
      if (known !== undefined) return [...known];
      const keys = (this.statements.byOwner.all(this.hash('email', email)) as KeyRow[]).map((r) => this.decrypt(r));
      this.recent.set(email, keys);
      return [...keys];
    });
  }

  async listByKeyId(id: string): Promise<StoredKey[]> {
    return this.run(() => {
      // Until every row is indexed an answer could miss a key: a 503, never a short list.
      if (this.statements.anyPending.get() === 1) {
        this.startIndexer();
        throw new StoreUnavailableError('The key id index is still being built; try again shortly');
      }
      return (this.statements.byKeyId.all(this.hash('keyid', id)) as KeyRow[]).map((r) => this.decrypt(r));
    });
  }

  async upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    // This connection's own commits do not change data_version: forget what it read.
    this.recent.clear();
    const owner = this.hash('email', key.email);
    const fp = this.hash('fingerprint', key.fingerprint);
    const idTags = (await keyIdsOf(key.fingerprint, key.publicKey)).map((id) => this.hash('keyid', id));
    return this.run(() =>
      this.db
        .transaction((): UpsertResult => {
          const existing = this.statements.byFp.get(fp) as KeyRow | undefined;
          if (existing !== undefined && !existing.owner.equals(owner)) throw new FingerprintConflictError();
          if (existing !== undefined) {
            const old = this.decrypt(existing);
            if (old.privateKey === key.privateKey && old.publicKey === key.publicKey) return 'unchanged';
          }
          // Inside the IMMEDIATE transaction, which holds SQLite's write lock: no other worker, host
          // sharing the file or --import can add a key between this count and the insert.
          if (limits !== undefined) checkOwnerKeyLimits((this.statements.byOwner.all(owner) as KeyRow[]).map((r) => this.decrypt(r)), key, limits);
          const iv = randomBytes(12);
          const record = seal(this.keys.encryption, iv, Buffer.from(JSON.stringify(toRecord(key))), aad(owner, fp));
          // The triggers queue the row and drop its old ids; its new ids go in with it.
          const id = existing === undefined ? Number(this.statements.insert.run(owner, fp, iv, record).lastInsertRowid) : existing.id;
          if (existing !== undefined) this.statements.update.run(iv, record, id);
          this.addKeyIds(id, idTags);
          return existing === undefined ? 'added' : 'updated';
        })
        .immediate(),
    );
  }

  async delete(email: string, fingerprint: string): Promise<boolean> {
    this.recent.clear();
    return this.run(() => this.statements.delete.run(this.hash('email', email), this.hash('fingerprint', fingerprint)).changes > 0);
  }

  async *all(): AsyncIterable<StoredKey> {
    let after = 0;
    for (;;) {
      const rows = this.run(() => this.statements.page.all(after) as KeyRow[]);
      if (rows.length === 0) return;
      for (const row of rows) yield this.decrypt(row);
      after = rows[rows.length - 1]!.id;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.indexer?.catch(() => undefined);
    this.recent.clear();
    this.db.close();
  }

  /**
   * Indexes up to `limit` queued rows, a batch per transaction, from row `from` on and then from the
   * start; resolves, with where to go on from, when the queue is empty or the limit reached. A row
   * rewritten while its ids were computed stays queued for the next batch.
   */
  async indexPending(limit: number, from = 0): Promise<number> {
    for (let done = 0; done < limit && !this.closed; ) {
      const rows = this.run(() => this.statements.pending.all(from, Math.min(INDEX_BATCH, limit - done)) as KeyRow[]);
      if (rows.length === 0 && from > 0) {
        from = 0;
        continue;
      }
      if (rows.length === 0) return from;
      from = rows[rows.length - 1]!.id + 1;
      const indexed = await Promise.all(rows.map(async (row) => {
        const key = this.decrypt(row);
        return { row, tags: (await keyIdsOf(key.fingerprint, key.publicKey)).map((id) => this.hash('keyid', id)) };
      }));
      if (this.closed) return from;
      this.run(() =>
        this.db
          .transaction(() => {
            for (const { row, tags } of indexed) {
              const iv = this.statements.ivOf.get(row.id) as Buffer | undefined;
              if (iv !== undefined && iv.equals(row.iv)) this.addKeyIds(row.id, tags);
            }
          })
          .immediate(),
      );
      done += rows.length;
    }
    return from;
  }

  /** Starts the background indexer unless it runs; a failure is logged and retried by the next lookup. */
  startIndexer(): void {
    this.indexer ??= (async () => {
      // Each worker starts somewhere else in the queue, so several of them share the work.
      let from = Math.floor(Math.random() * ((this.run(() => this.statements.lastKey.get()) as number | null) ?? 0));
      while (!this.closed && this.run(() => this.statements.anyPending.get()) === 1) {
        from = await this.indexPending(INDEX_BATCH, from);
        // Not unref'd: close() waits for the indexer, which must get past its pause to see `closed`.
        await new Promise((resolve) => setTimeout(resolve, INDEX_PAUSE_MS));
      }
    })()
      .catch((e: unknown) => {
        this.logger.warn('Indexing key ids failed; retried by the next key id lookup', { error: e instanceof Error ? e.message : 'unknown error' });
      })
      .finally(() => {
        this.indexer = undefined;
      });
  }

  private addKeyIds(id: number, tags: readonly Buffer[]): void {
    for (const tag of tags) this.statements.addKeyId.run(tag, id);
    this.statements.indexed.run(id);
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

/** Binds a record to its row: a ciphertext moved to another owner or fingerprint fails to open. */
function aad(owner: Buffer, fp: Buffer): Buffer {
  return Buffer.concat([Buffer.from('ekm-key-v1'), owner, fp]);
}
