import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { ConfigError, EkmError, FingerprintConflictError, StoreUnavailableError } from '../../errors.js';
import { checkOwnerKeyLimits, type OwnerKeyLimits } from '../owner-key-limits.js';
import type { StoredKey, UpsertResult } from '../store.js';
import { ckrName, describeFailure } from './pkcs11-failure.js';
import { RecordCipher, type RecordContent } from './record-cipher.js';
import { KEY_ID_APPLICATION, RECORD_APPLICATION, findOrCreateRecordKeys } from './record-keys.js';
import { TokenSession } from './token-session.js';
import { WriteMarker } from './write-marker.js';

/** A secret-free event for the owning process's logger. */
export type EngineLog = (level: 'info' | 'warn' | 'error', message: string, fields?: Readonly<Record<string, string | number>>) => void;

interface Connection {
  readonly session: TokenSession;
  /** Only on SoftHSM2, whose view of the token our own writes can freeze (see markWritten). */
  readonly marker: WriteMarker | undefined;
  readonly cipher: RecordCipher;
  /** Counts connections, so an export cursor knows its handles died with an old one. */
  readonly generation: number;
}

interface Scan {
  /** The connection the handles belong to; after a reconnect the scan finds the objects again. */
  generation: number;
  handles: pkcs11js.Handle[];
  next: number;
  /** Fingerprint tags already returned, so a scan that finds again returns each key once. */
  readonly emitted: Set<string>;
  touchedAt: number;
}

interface StoredObject {
  readonly handle: pkcs11js.Handle;
  readonly ownerTag: Buffer;
  readonly fingerprintTag: Buffer;
  readonly value: Buffer;
}

const SCAN_PAGE = 100;
const SCAN_IDLE_MS = 5 * 60_000;
const MAX_SCANS = 16;
/** Reconnection attempts after an outage: 250 ms doubling to 5 s, so recovery is seconds after the HSM is back. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;
/** How long after its own write a process treats another's marker change as possibly hidden by it. */
const FOREIGN_MARK_GRACE_MS = 3_000;
/** Quick reconnection attempts before an operation gives up, 25 ms apart and growing. */
const CONNECT_ATTEMPTS = 4;
const CONNECT_PAUSE_MS = 25;
/** A refused PIN is retried rarely: every attempt counts towards locking it. */
const RETRY_PIN_MS = 60_000;

/**
 * The key store itself, on the PKCS#11 token: one data object per key (CKA_LABEL = owner tag hex,
 * CKA_OBJECT_ID = fingerprint tag, CKA_VALUE = the sealed record), all calls synchronous and run one
 * at a time on the engine thread. Any PKCS#11 failure drops the connection (C_Finalize) and the
 * next request reconnects (C_Initialize, C_Login), with backoff, so the store recovers by itself
 * when the HSM is back; meanwhile every operation throws StoreUnavailableError.
 */
export class TokenRecordStore {
  private connection: Connection | undefined;
  private generation = 0;
  private failures = 0;
  private nextAttemptAt = 0;
  private lastFailure = '';
  private clock = 0;
  private closed = false;
  /** SoftHSM2 only (see markWritten): reconnect before the next operation. */
  private stale = false;
  /** SoftHSM2 only: the write marker's value as this process last saw or set it. */
  private lastMarker = '';
  /** SoftHSM2 only: when this process last wrote (Date.now()), 0 after a reconnect. */
  private lastOwnWriteAt = 0;
  private readonly scans = new Map<string, Scan>();

  private constructor(
    private readonly lib: pkcs11js.PKCS11,
    private readonly module: string,
    private readonly pin: string,
    private readonly log: EngineLog,
  ) {}

  /**
   * Connects (the module is loaded); throws ConfigError for operator mistakes. An outage
   * (StoreUnavailableError) is thrown too, unless `tolerateOutage`: then the store starts
   * disconnected, answers 503 and reconnects like after any other outage.
   */
  static open(lib: pkcs11js.PKCS11, module: string, pin: string, log: EngineLog, tolerateOutage: boolean): TokenRecordStore {
    const store = new TokenRecordStore(lib, module, pin, log);
    try {
      store.connection = store.connectPatiently();
    } catch (e) {
      if (!tolerateOutage || !(e instanceof StoreUnavailableError)) throw e;
      store.noteFailure(e, Date.now());
    }
    return store;
  }

  /** The label of the token in use (not secret); empty while disconnected. */
  get tokenLabel(): string {
    return this.connection?.session.tokenLabel ?? '';
  }

  /** A real round trip: a find on the token, verified. */
  probe(): void {
    this.run((c) => {
      this.find(c, [...recordTemplate(), { type: pkcs11js.CKA_LABEL, value: 'flowcrypt-ekm probe' }]);
    });
  }

  list(email: string): StoredKey[] {
    return this.run((c) => this.owned(c, email));
  }

  /**
   * The keys answering to a key id: its lookup objects (CKA_LABEL = key id tag) name fingerprint
   * tags, whose records are read as upsert reads them. Two finds plus one per key found.
   */
  listByKeyId(id: string): StoredKey[] {
    return this.run((c) => {
      const fingerprintTags = new Map<string, Buffer>();
      for (const handle of this.find(c, [...keyIdTemplate(), { type: pkcs11js.CKA_LABEL, value: c.cipher.keyIdTag(id).toString('hex') }])) {
        const tag = this.readObjectId(c, handle);
        if (tag !== undefined) fingerprintTags.set(tag.toString('hex'), tag);
      }
      const found: RecordContent[] = [];
      for (const fingerprintTag of fingerprintTags.values()) {
        const newest = this.findByFingerprint(c, fingerprintTag)
          .map((o) => c.cipher.open(o.ownerTag, fingerprintTag, o.value))
          .reduce<RecordContent | undefined>((a, b) => (a === undefined || a.writtenAt < b.writtenAt ? b : a), undefined);
        if (newest !== undefined) found.push(newest);
      }
      return found.sort((a, b) => a.createdAt - b.createdAt || a.key.fingerprint.localeCompare(b.key.fingerprint)).map((r) => r.key);
    });
  }

  /**
   * The limits are checked here, on the engine thread that serves one request at a time and is the
   * only writer of this host's token session: no other upsert of this host runs between the check and
   * the write. Hosts sharing one HSM partition, or an --import beside the daemon, each check on
   * their own, so together they may exceed the limits by at most one key per concurrent writer.
   */
  upsert(key: StoredKey, keyIds: readonly string[], limits?: OwnerKeyLimits): UpsertResult {
    return this.run((c) => {
      const ownerTag = c.cipher.ownerTag(key.email);
      const fingerprintTag = c.cipher.fingerprintTag(key.fingerprint);
      const existing = this.findByFingerprint(c, fingerprintTag);
      if (existing.some((o) => !o.ownerTag.equals(ownerTag))) throw new FingerprintConflictError();
      const contents = existing.map((o) => c.cipher.open(ownerTag, fingerprintTag, o.value));
      const [only] = contents;
      if (contents.length === 1 && only !== undefined && sameKey(only.key, key)) {
        // An unchanged key written by a version without lookup objects gets them now (--import does it).
        if (this.syncKeyIds(c, fingerprintTag, keyIds, false)) this.markWritten(c);
        return 'unchanged';
      }
      if (limits !== undefined) checkOwnerKeyLimits(this.owned(c, key.email), key, limits);
      this.syncKeyIds(c, fingerprintTag, keyIds, false);
      const now = this.tick();
      const createdAt = contents.reduce((min, r) => Math.min(min, r.createdAt), now);
      // CKA_VALUE of a data object cannot be changed (SoftHSM2): an update writes the new object first,
      // then removes the old ones, so a crash in between leaves both and readers take the newest.
      const created = c.session.lib.C_CreateObject(c.session.handle, [
        ...recordTemplate(),
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_LABEL, value: ownerTag.toString('hex') },
        { type: pkcs11js.CKA_OBJECT_ID, value: fingerprintTag },
        { type: pkcs11js.CKA_VALUE, value: c.cipher.seal(ownerTag, fingerprintTag, { key, createdAt, writtenAt: now }) },
      ]);
      for (const old of existing) {
        this.destroy(c, old.handle);
        for (const scan of this.scans.values()) {
          const at = scan.handles.findIndex((h) => h.equals(old.handle));
          if (at >= 0) scan.handles[at] = created;
        }
      }
      // Lookups of the ids the previous version had and this one lacks go only now that it is gone.
      this.syncKeyIds(c, fingerprintTag, keyIds, true);
      this.markWritten(c);
      return existing.length === 0 ? 'added' : 'updated';
    });
  }

  delete(email: string, fingerprint: string): boolean {
    return this.run((c) => {
      const ownerTag = c.cipher.ownerTag(email);
      const fingerprintTag = c.cipher.fingerprintTag(fingerprint);
      const mine = this.findByFingerprint(c, fingerprintTag).filter((o) => o.ownerTag.equals(ownerTag));
      for (const o of mine) this.destroy(c, o.handle);
      if (mine.length > 0) this.syncKeyIds(c, fingerprintTag, [], true);
      if (mine.length > 0) this.markWritten(c);
      return mine.length > 0;
    });
  }

  /** The newest record of each fingerprint of this owner, oldest key first. */
  private owned(c: Connection, email: string): StoredKey[] {
    const ownerTag = c.cipher.ownerTag(email);
    const newest = new Map<string, RecordContent>();
    for (const handle of this.find(c, [...recordTemplate(), { type: pkcs11js.CKA_LABEL, value: ownerTag.toString('hex') }])) {
      const object = this.read(c, handle);
      if (object === undefined) continue;
      const content = c.cipher.open(ownerTag, object.fingerprintTag, object.value);
      if (content.key.email !== email) throw new StoreUnavailableError('A stored record names another owner than its object; the token may hold tampered objects');
      const seen = newest.get(content.key.fingerprint);
      if (seen === undefined || seen.writtenAt < content.writtenAt) newest.set(content.key.fingerprint, content);
    }
    return [...newest.values()]
      .sort((a, b) => a.createdAt - b.createdAt || a.key.fingerprint.localeCompare(b.key.fingerprint))
      .map((r) => r.key);
  }

  /** Starts an export: a snapshot of the objects now on the token, read page by page. */
  scanOpen(): string {
    return this.run((c) => {
      this.expireScans();
      if (this.scans.size >= MAX_SCANS) throw new StoreUnavailableError(`Too many exports at once (at most ${MAX_SCANS})`);
      const id = randomBytes(12).toString('hex');
      this.scans.set(id, { generation: c.generation, handles: this.find(c, recordTemplate()), next: 0, emitted: new Set(), touchedAt: Date.now() });
      return id;
    });
  }

  /** The next keys of an export; an empty page ends it. */
  scanNext(id: string): StoredKey[] {
    return this.run((c) => {
      const scan = this.scans.get(id);
      if (scan === undefined) throw new StoreUnavailableError('The export expired or was never started; run it again');
      if (scan.generation !== c.generation) {
        // Handles die with their connection: find the objects again and skip what was returned.
        scan.handles = this.find(c, recordTemplate());
        scan.next = 0;
        scan.generation = c.generation;
      }
      scan.touchedAt = Date.now();
      const page: StoredKey[] = [];
      while (page.length < SCAN_PAGE && scan.next < scan.handles.length) {
        const object = this.read(c, scan.handles[scan.next++]!);
        if (object === undefined) continue;
        const tag = object.fingerprintTag.toString('hex');
        if (scan.emitted.has(tag)) continue;
        scan.emitted.add(tag);
        page.push(c.cipher.open(object.ownerTag, object.fingerprintTag, object.value).key);
      }
      if (page.length === 0) this.scans.delete(id);
      return page;
    });
  }

  scanClose(id: string): void {
    this.scans.delete(id);
  }

  close(): void {
    this.closed = true;
    this.scans.clear();
    this.connection?.session.close();
    this.connection = undefined;
  }

  private connect(): Connection {
    const session = TokenSession.open(this.lib, this.module, this.pin);
    try {
      const keys = findOrCreateRecordKeys(session);
      const marker = session.lib.C_GetInfo().manufacturerID.trim() === 'SoftHSM' ? WriteMarker.open(session) : undefined;
      this.lastMarker = marker?.read() ?? '';
      this.lastOwnWriteAt = 0;
      this.stale = false;
      return { session, cipher: new RecordCipher(session, keys), generation: ++this.generation, marker };
    } catch (e) {
      session.close();
      throw e;
    }
  }

  /** The live connection, reconnecting when the backoff allows; throws StoreUnavailableError meanwhile. */
  private connected(): Connection {
    if (this.closed) throw new StoreUnavailableError('The PKCS#11 store is closed');
    if (this.connection !== undefined && this.stale) {
      this.stale = false;
      this.disconnect();
    }
    if (this.connection !== undefined) return this.connection;
    const now = Date.now();
    if (now < this.nextAttemptAt) {
      throw new StoreUnavailableError(`The HSM is unavailable (${this.lastFailure}); next reconnection attempt in ${this.nextAttemptAt - now} ms`);
    }
    try {
      this.connection = this.connectPatiently();
    } catch (e) {
      this.noteFailure(e, now);
      throw new StoreUnavailableError(`The HSM is unavailable (${this.lastFailure})`, { cause: e });
    }
    if (this.failures > 0) this.log('info', 'Reconnected to the HSM', { token: this.connection.session.tokenLabel, failedAttempts: this.failures });
    this.failures = 0;
    return this.connection;
  }

  /**
   * connect, tried a few times within a fraction of a second: SoftHSM2 fails C_Login or even shows
   * no token for a moment while another process writes the token, which is no outage.
   */
  private connectPatiently(): Connection {
    for (let attempt = 1; ; attempt++) {
      try {
        return this.connect();
      } catch (e) {
        if (attempt >= CONNECT_ATTEMPTS || ckrName(e instanceof ConfigError ? e.cause : e)?.startsWith('CKR_PIN_') === true) throw e;
        // The engine thread has nothing else to do meanwhile: its requests are served one at a time.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, CONNECT_PAUSE_MS * attempt);
      }
    }
  }

  private disconnect(): void {
    this.connection?.session.close();
    this.connection = undefined;
    this.nextAttemptAt = 0;
  }

  /** Schedules the next connection attempt after a failed one. */
  private noteFailure(e: unknown, now: number): void {
    this.failures++;
    // A refused PIN arrives as the ConfigError openFailure made of the module's error.
    const pinRefused = ckrName(e instanceof ConfigError ? e.cause : e)?.startsWith('CKR_PIN_') === true;
    this.nextAttemptAt = now + (pinRefused ? RETRY_PIN_MS : Math.min(RETRY_MIN_MS * 2 ** (this.failures - 1), RETRY_MAX_MS));
    this.lastFailure = e instanceof ConfigError ? e.message.split(':')[0]! : e instanceof EkmError ? e.details : describeFailure(e);
    if (this.failures === 1 || pinRefused) {
      this.log('error', 'Cannot connect to the HSM; retrying with backoff', { reason: e instanceof EkmError ? e.details : e instanceof Error ? e.message : this.lastFailure });
    }
  }

  /**
   * SoftHSM2 2.6 keeps an index of the token's objects per process and rebuilds it at a find when
   * the token's generation counter changed. But a process's own write sets its remembered counter to
   * the value on disk plus one, swallowing a write another process made since this one's last find:
   * that object stays invisible here until the module is re-initialised. So every EKM process on
   * SoftHSM2 sets the write marker after its writes, and reconnects (a fresh index) when the marker
   * shows that someone else wrote around its own write. Reconnecting after every write would do
   * too, but costs a reload of every object (about 200 ms among 1,000 keys).
   * The case left: another process sets the marker between this one's read and set just below, or
   * more than FOREIGN_MARK_GRACE_MS after its write.
   */
  private markWritten(c: Connection): void {
    if (c.marker === undefined) return;
    this.lastOwnWriteAt = Date.now();
    if (c.marker.read() !== this.lastMarker) this.stale = true;
    this.lastMarker = c.marker.touch();
  }

  /**
   * SoftHSM2: true when another process wrote and a write of ours may have hidden it (see
   * markWritten). The other process sets the marker a moment after its own write, so a change seen
   * up to FOREIGN_MARK_GRACE_MS after our last write counts.
   */
  private mayHaveMissedForeignWrite(c: Connection): boolean {
    if (c.marker === undefined) return false;
    const marker = c.marker.read();
    const missed = marker !== this.lastMarker && Date.now() - this.lastOwnWriteAt < FOREIGN_MARK_GRACE_MS;
    this.lastMarker = marker;
    return missed;
  }

  /**
   * Runs one operation. A PKCS#11 failure drops the connection; the operation is tried once more on
   * a new one (a transient failure, e.g. SoftHSM2 under another process's write, is not an outage),
   * and a second failure is a 503. Retrying an upsert is safe: it starts from what the token holds.
   */
  private run<T>(op: (c: Connection) => T): T {
    for (let attempt = 1; ; attempt++) {
      let c = this.connected();
      try {
        if (this.mayHaveMissedForeignWrite(c)) {
          this.disconnect();
          c = this.connected();
        }
        return op(c);
      } catch (e) {
        if (e instanceof EkmError) throw e;
        const reason = describeFailure(e);
        if (this.connection === c) {
          this.disconnect();
          this.lastFailure = reason;
          this.log('warn', 'HSM operation failed; the connection was closed and is reopened', { reason, attempt });
        }
        if (attempt > 1) throw new StoreUnavailableError(`The HSM failed (${reason})`, { cause: e });
      }
    }
  }

  /** C_FindObjects* to the end, then proof that the token is still there (see assertKeysPresent). */
  private find(c: Connection, template: pkcs11js.Template): pkcs11js.Handle[] {
    const found = c.session.find(template);
    c.cipher.assertKeysPresent();
    return found;
  }

  /**
   * Creates the lookup objects (CKA_LABEL = key id tag, CKA_OBJECT_ID = fingerprint tag) this
   * fingerprint lacks and, when `prune`, destroys those of ids not listed. Created before the record
   * they point to and pruned after it: a crash leaves a lookup of nothing, never a key unfindable.
   * True when it created any.
   */
  private syncKeyIds(c: Connection, fingerprintTag: Buffer, keyIds: readonly string[], prune: boolean): boolean {
    const wanted = new Set(keyIds.map((id) => c.cipher.keyIdTag(id).toString('hex')));
    const present = new Set<string>();
    for (const handle of this.find(c, [...keyIdTemplate(), { type: pkcs11js.CKA_OBJECT_ID, value: fingerprintTag }])) {
      const label = this.readLabel(c, handle);
      if (label === undefined) continue;
      if (wanted.has(label) && !present.has(label)) present.add(label);
      else if (prune) this.destroy(c, handle);
    }
    let created = false;
    for (const label of wanted) {
      if (present.has(label)) continue;
      c.session.lib.C_CreateObject(c.session.handle, [
        ...keyIdTemplate(),
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
        { type: pkcs11js.CKA_OBJECT_ID, value: fingerprintTag },
      ]);
      created = true;
    }
    return created;
  }

  private findByFingerprint(c: Connection, fingerprintTag: Buffer): StoredObject[] {
    return this.find(c, [...recordTemplate(), { type: pkcs11js.CKA_OBJECT_ID, value: fingerprintTag }])
      .map((h) => this.read(c, h))
      .filter((o): o is StoredObject => o !== undefined);
  }

  /** undefined when another process removed the object after our find (the token itself is checked). */
  private read(c: Connection, handle: pkcs11js.Handle): StoredObject | undefined {
    try {
      const [label, oid, value] = c.session.lib
        .C_GetAttributeValue(c.session.handle, handle, [{ type: pkcs11js.CKA_LABEL }, { type: pkcs11js.CKA_OBJECT_ID }, { type: pkcs11js.CKA_VALUE }])
        .map((a) => a.value);
      if (label === undefined || oid === undefined || value === undefined) throw new Error('C_GetAttributeValue returned fewer attributes than asked');
      return { handle, ownerTag: Buffer.from(label.toString('latin1'), 'hex'), fingerprintTag: oid, value };
    } catch (e) {
      if (ckrName(e) !== 'CKR_OBJECT_HANDLE_INVALID') throw e;
      c.cipher.assertKeysPresent();
      return undefined;
    }
  }

  private readLabel(c: Connection, handle: pkcs11js.Handle): string | undefined {
    return this.readAttribute(c, handle, pkcs11js.CKA_LABEL)?.toString('latin1');
  }

  private readObjectId(c: Connection, handle: pkcs11js.Handle): Buffer | undefined {
    return this.readAttribute(c, handle, pkcs11js.CKA_OBJECT_ID);
  }

  /** undefined when another process removed the object after our find. */
  private readAttribute(c: Connection, handle: pkcs11js.Handle, type: number): Buffer | undefined {
    try {
      const [attribute] = c.session.lib.C_GetAttributeValue(c.session.handle, handle, [{ type }]);
      if (attribute?.value === undefined) throw new Error('C_GetAttributeValue returned fewer attributes than asked');
      return attribute.value;
    } catch (e) {
      if (ckrName(e) !== 'CKR_OBJECT_HANDLE_INVALID') throw e;
      c.cipher.assertKeysPresent();
      return undefined;
    }
  }

  private destroy(c: Connection, handle: pkcs11js.Handle): void {
    try {
      c.session.lib.C_DestroyObject(c.session.handle, handle);
    } catch (e) {
      if (ckrName(e) !== 'CKR_OBJECT_HANDLE_INVALID') throw e;
      c.cipher.assertKeysPresent();
    }
  }

  /** Strictly increasing microseconds: insertion order survives several writes in one millisecond. */
  private tick(): number {
    this.clock = Math.max(Date.now() * 1000, this.clock + 1);
    return this.clock;
  }

  private expireScans(): void {
    const now = Date.now();
    for (const [id, scan] of this.scans) if (now - scan.touchedAt > SCAN_IDLE_MS) this.scans.delete(id);
  }
}

function recordTemplate(): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_APPLICATION, value: RECORD_APPLICATION },
  ];
}

/** A lookup object: the only trace of a key id on the token, a keyed hash. */
function keyIdTemplate(): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_APPLICATION, value: KEY_ID_APPLICATION },
  ];
}

function sameKey(a: StoredKey, b: StoredKey): boolean {
  return a.email === b.email && a.fingerprint === b.fingerprint && a.privateKey === b.privateKey && a.publicKey === b.publicKey;
}
