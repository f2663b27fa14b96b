import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { EncryptedDbStoreConfig } from '../config/config.js';
import { ConfigError, EkmError, FingerprintConflictError, StoreUnavailableError } from '../errors.js';
import { checkOwnerKeyLimits, type OwnerKeyLimits } from './owner-key-limits.js';
import type { Store, StoreDependencies, StoredKey, UpsertResult } from './store.js';

/** The database file inside `store.db.folder`. */
export const DB_FILE_NAME = 'ekm.sqlite';
const FORMAT_VERSION = '1';
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
export async function openEncryptedDbStore(config: EncryptedDbStoreConfig, _deps: StoreDependencies): Promise<Store> {
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
    return new EncryptedDbStore(db, deriveAndCheck(db, config));
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
  }).immediate();
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

  constructor(
    private readonly db: Database.Database,
    private readonly keys: Keys,
  ) {
    this.statements = {
      probe: db.prepare("SELECT value FROM meta WHERE name = 'check'"),
      byOwner: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE owner = ? ORDER BY id'),
      byFp: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE fp = ?'),
      insert: db.prepare('INSERT INTO keys (owner, fp, iv, record) VALUES (?, ?, ?, ?)'),
      update: db.prepare('UPDATE keys SET iv = ?, record = ? WHERE id = ?'),
      delete: db.prepare('DELETE FROM keys WHERE owner = ? AND fp = ?'),
      page: db.prepare('SELECT id, owner, fp, iv, record FROM keys WHERE id > ? ORDER BY id LIMIT 200'),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
      count: db.prepare('SELECT count(*) FROM keys').pluck(),
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

  async upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    // This connection's own commits do not change data_version: forget what it read.
    this.recent.clear();
    const owner = this.hash('email', key.email);
    const fp = this.hash('fingerprint', key.fingerprint);
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
          if (existing === undefined) {
            this.statements.insert.run(owner, fp, iv, record);
            return 'added';
          }
          this.statements.update.run(iv, record, existing.id);
          return 'updated';
        })
        .immediate(),
    );
  }

  async count(): Promise<number> {
    return this.run(() => this.statements.count.get() as number);
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
    this.recent.clear();
    this.db.close();
  }

  private hash(kind: 'email' | 'fingerprint', value: string): Buffer {
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
