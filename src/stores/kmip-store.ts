import type { KmipStoreConfig } from '../config/config.js';
import { FingerprintConflictError, StoreUnavailableError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { loadKeystore, loadTruststore } from '../tls/pkcs12.js';
import { locateIndexKey, resolveIndexKey, type IndexKey } from './kmip/index-key.js';
import { checked, KmipClient } from './kmip/kmip-client.js';
import { DEFAULT_POOL_OPTIONS, type KmipPoolOptions } from './kmip/kmip-connection-pool.js';
import { ObjectType, ResultReason, ResultStatus, SecretDataType, Tag } from './kmip/kmip-enums.js';
import { KmipOperationError, KmipUnavailableError } from './kmip/kmip-errors.js';
import { child, destroy, get, getAttributes, locate, objectTypeAttribute, readAttributes, readLocated, readSecretDataMaterial, readUniqueIdentifier, registerSecretData, type BatchItemResult } from './kmip/kmip-messages.js';
import { keyIdsOf } from '../keys/key-ids.js';
import { decodeRecord, encodeRecord, FINGERPRINT_NAME_PREFIX, nextOrder, RECORD_TAG, RecordTags, type KeyRecord } from './kmip/key-record.js';
import { checkOwnerKeyLimits, type OwnerKeyLimits } from './owner-key-limits.js';
import type { Store, StoreDependencies, StoredKey, UpsertResult } from './store.js';

/** Objects fetched per batch: PyKMIP answers at most 1 MB per message, a record is 4-10 KB. */
const GET_BATCH = 50;
/** Identifiers whose Name is read per batch during export. */
const ATTRIBUTE_BATCH = 200;

/** How a KmipStore is opened; operators set none of this. */
export interface KmipStoreOptions {
  /** Connection pool sizes and timeouts (tests shorten them). */
  readonly pool?: Partial<KmipPoolOptions>;
}

/**
 * Opens the KMIP store. The keystore and truststore are read now (a wrong password is a
 * ConfigError naming the file); the server is first contacted by the first operation, so the EKM
 * starts while the KMIP server is down and recovers by itself when it returns (reads answer 503
 * meanwhile).
 */
export async function openKmipStore(config: KmipStoreConfig, deps: StoreDependencies, options: KmipStoreOptions = {}): Promise<Store> {
  const client = new KmipClient({
    host: config.hostname,
    port: config.port,
    identity: loadKeystore(config.key),
    truststore: config.truststore === undefined ? undefined : loadTruststore(config.truststore),
    truststoreFile: config.truststore?.file,
    pool: { ...DEFAULT_POOL_OPTIONS, ...options.pool },
  });
    // Only setup commands (--test-store-connection, --import) may create the index key on a server
  // that has none visible to this client: a serving daemon whose identity cannot see the
  // deployment's objects answers 503 instead of an empty key list.
  return new KmipStore(client, deps.logger, deps.setup ?? false);
}

/**
 * Keys kept on a KMIP 1.0 server (any vendor's; tested against PyKMIP), one Secret Data object per
 * key, found by keyed-hash tags (see key-record.ts). Each operation sends at most one Locate, since
 * servers' Locate may be linear in the objects stored. KMIP 1.0 cannot replace an object's key
 * material, so an update registers the new version before destroying the old one; readers take the
 * latest of a fingerprint's objects, so a crash in between loses nothing.
 *
 * KMIP 1.0 has no conditional create either: two different users uploading the same fingerprint in
 * the same instant can both succeed; the next upsert of that fingerprint by either sees the
 * conflict (409). For the same reason the per-user limits are a check before the Register, not one
 * step with it: concurrent upserts of new fingerprints by one user (on several workers or hosts)
 * may each pass it. Within one process the upserts of one owner run one after another (ownerWrites),
 * so an owner can exceed api.keys.max.per.user by at most the number of processes writing at once
 * less one (the workers of every host, plus an --import), however many PUTs a client sends at once,
 * and the byte budget by as many keys.
 */
class KmipStore implements Store {
  readonly type = 'KmipStore';
  private indexKey: Promise<IndexKey> | undefined;
  /** The last upsert of each owner in flight in this process; the next one waits for it. */
  private readonly ownerWrites = new Map<string, Promise<unknown>>();

  constructor(
    private readonly client: KmipClient,
    private readonly logger: Logger,
    private readonly createIndexKey: boolean,
  ) {}

  async probe(): Promise<void> {
    await this.run(async () => {
      await this.tags();
      const { uniqueIdentifier } = await this.indexKey!;
      const ids = readLocated(await this.client.one(locateIndexKey(), 'Locate'));
      if (!ids.includes(uniqueIdentifier)) {
        throw new StoreUnavailableError(`The EKM's index key (KMIP object ${uniqueIdentifier}) is gone from the KMIP server: stored keys cannot be found until it is restored`);
      }
    });
  }

  async listByEmail(email: string): Promise<StoredKey[]> {
    return this.run(async () => {
      const tags = await this.tags();
      const ids = readLocated(await this.client.one(locate([objectTypeAttribute(ObjectType.SecretData), RECORD_TAG(), tags.owner(email)]), 'Locate'));
      const records = latestPerFingerprint(await this.getRecords(ids));
      for (const { record } of records) {
        if (record.key.email !== email) throw tampered();
      }
      return records.sort((a, b) => a.record.created - b.record.created || compare(a.record.key.fingerprint, b.record.key.fingerprint)).map((r) => r.record.key);
    });
  }

  async listByKeyId(id: string): Promise<StoredKey[]> {
    return this.run(async () => {
      const tags = await this.tags();
      const ids = readLocated(await this.client.one(locate([objectTypeAttribute(ObjectType.SecretData), RECORD_TAG(), tags.keyId(id)]), 'Locate'));
      const records = latestPerFingerprint(await this.getRecords(ids));
      return records.sort((a, b) => a.record.created - b.record.created || compare(a.record.key.fingerprint, b.record.key.fingerprint)).map((r) => r.record.key);
    });
  }

  async upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    const before = this.ownerWrites.get(key.email) ?? Promise.resolve();
    const mine = before.then(() => this.upsertNow(key, limits), () => this.upsertNow(key, limits));
    this.ownerWrites.set(key.email, mine);
    try {
      return await mine;
    } finally {
      if (this.ownerWrites.get(key.email) === mine) this.ownerWrites.delete(key.email);
    }
  }

  private async upsertNow(key: StoredKey, limits: OwnerKeyLimits | undefined): Promise<UpsertResult> {
    const keyIds = await keyIdsOf(key.fingerprint, key.publicKey);
    return this.run(async () => {
      const tags = await this.tags();
      const ids = readLocated(await this.client.one(locate([objectTypeAttribute(ObjectType.SecretData), RECORD_TAG(), tags.fingerprint(key.fingerprint)]), 'Locate'));
      const existing = await this.getRecords(ids);
      if (existing.some((r) => r.record.key.email !== key.email)) throw new FingerprintConflictError();
      if (existing.some((r) => r.record.key.fingerprint !== key.fingerprint)) throw tampered();
      const latest = latestPerFingerprint(existing)[0];
      const attributes = [RECORD_TAG(), tags.owner(key.email), tags.fingerprint(key.fingerprint), ...keyIds.map((id) => tags.keyId(id))];
      const unchanged = latest?.record.key.privateKey === key.privateKey && latest.record.key.publicKey === key.publicKey;
      // A record written by a version without key id Names is written again with them (--import does it).
      if (unchanged && (await this.namesOf(latest.id)).length >= attributes.filter((a) => a.name === 'Name').length) {
        await this.destroyQuietly(existing.filter((r) => r !== latest).map((r) => r.id));
        return 'unchanged';
      }
      if (limits !== undefined && !unchanged) checkOwnerKeyLimits(await this.listByEmail(key.email), key, limits);
      const written = nextOrder();
      const created = existing.length === 0 ? written : Math.min(...existing.map((r) => r.record.created));
      const material = encodeRecord({ key, created, written });
      readUniqueIdentifier(await this.client.one(registerSecretData(SecretDataType.Password, material, attributes), 'Register'));
      // The new version is stored: failing to remove the old one must not fail the write.
      await this.destroyQuietly(existing.map((r) => r.id));
      return unchanged ? 'unchanged' : existing.length === 0 ? 'added' : 'updated';
    });
  }

  async delete(email: string, fingerprint: string): Promise<boolean> {
    return this.run(async () => {
      const tags = await this.tags();
      const ids = readLocated(
        await this.client.one(locate([objectTypeAttribute(ObjectType.SecretData), RECORD_TAG(), tags.owner(email), tags.fingerprint(fingerprint)]), 'Locate'),
      );
      if (ids.length === 0) return false;
      const results = await this.batched(ids, GET_BATCH, destroy);
      let destroyed = false;
      for (const result of results) {
        if (isGone(result)) continue;
        checked(result, 'Destroy');
        destroyed = true;
      }
      return destroyed;
    });
  }

  async *all(): AsyncIterable<StoredKey> {
    // Group identifiers by fingerprint tag first (names are small), then fetch group by group, so an
    // export holds identifiers in memory rather than every key.
    const groups = await this.run(async () => {
      await this.tags();
      const ids = readLocated(await this.client.one(locate([objectTypeAttribute(ObjectType.SecretData), RECORD_TAG()]), 'Locate'));
      const byName = new Map<string, string[]>();
      const results = await this.batched(ids, ATTRIBUTE_BATCH, (id) => getAttributes(id, ['Name']));
      for (const [i, result] of results.entries()) {
        if (isGone(result)) continue;
        const names = readNames(result).filter((n) => n.startsWith(FINGERPRINT_NAME_PREFIX));
        const name = names.sort()[0] ?? `id:${ids[i]!}`;
        byName.set(name, [...(byName.get(name) ?? []), ids[i]!]);
      }
      return [...byName.values()];
    });
    let page: string[][] = [];
    const flush = async () => {
      const batch = page;
      page = [];
      const records = await this.run(() => this.getRecords(batch.flat()));
      return batch.flatMap((group) => latestPerFingerprint(records.filter((r) => group.includes(r.id))).map((r) => r.record.key));
    };
    for (const group of groups) {
      page.push(group);
      if (page.flat().length >= GET_BATCH) yield* await flush();
    }
    if (page.length > 0) yield* await flush();
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** The tagger, resolving the index key on first use; a failed resolution is retried next time. */
  private async tags(): Promise<RecordTags> {
    this.indexKey ??= resolveIndexKey(this.client, this.logger, locate([objectTypeAttribute(ObjectType.SecretData), RECORD_TAG()], 1), this.createIndexKey).catch((e: unknown) => {
      this.indexKey = undefined;
      throw e;
    });
    return new RecordTags((await this.indexKey).key);
  }

  /** Gets and decodes these objects; those destroyed meanwhile are left out. */
  private async getRecords(ids: readonly string[]): Promise<{ id: string; record: KeyRecord }[]> {
    const results = await this.batched(ids, GET_BATCH, get);
    const records: { id: string; record: KeyRecord }[] = [];
    for (const [i, result] of results.entries()) {
      if (isGone(result)) continue;
      const record = decodeRecord(readSecretDataMaterial(checked(result, 'Get')).material);
      if (record === undefined) throw new StoreUnavailableError(`KMIP object ${ids[i]!} carries the EKM's tags but is not an EKM key record`);
      records.push({ id: ids[i]!, record });
    }
    return records;
  }

  /** One request per `size` identifiers, results in the order of `ids`. */
  private async batched(ids: readonly string[], size: number, op: (id: string) => Parameters<KmipClient['batch']>[0][number]): Promise<BatchItemResult[]> {
    const results: BatchItemResult[] = [];
    for (let i = 0; i < ids.length; i += size) {
      results.push(...(await this.client.batch(ids.slice(i, i + size).map(op))).items);
    }
    return results;
  }

  /** The Names of an object; none when it is gone. */
  private async namesOf(id: string): Promise<string[]> {
    const [result] = (await this.client.batch([getAttributes(id, ['Name'])])).items;
    return result === undefined || isGone(result) ? [] : readNames(result);
  }

  private async destroyQuietly(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    try {
      for (const result of await this.batched(ids, GET_BATCH, destroy)) {
        if (!isGone(result)) checked(result, 'Destroy');
      }
    } catch (e) {
      this.logger.warn('Could not destroy a superseded key version on the KMIP server; it is ignored and removed by the next write', {
        error: e instanceof Error ? e.message : 'unknown error',
      });
    }
  }

  /** Runs an operation; KMIP failures become 503s whose details say what happened in plain words. */
  private async run<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      if (e instanceof StoreUnavailableError || e instanceof FingerprintConflictError) throw e;
      if (e instanceof KmipUnavailableError || e instanceof KmipOperationError) throw new StoreUnavailableError(e.message, { cause: e });
      throw e;
    }
  }
}

function readNames(result: BatchItemResult): string[] {
  return readAttributes(checked(result, 'Get Attributes'))
    .filter((a) => a.name === 'Name')
    .map((a) => child(a.value, Tag.NameValue, 'TextString').value);
}

/** A batch item that failed because its object no longer exists (destroyed by a concurrent request). */
function isGone(result: BatchItemResult): boolean {
  return result.status !== ResultStatus.Success && result.reason === ResultReason.ItemNotFound;
}

/** Of several objects for one fingerprint (an update interrupted, or two at once), the latest. */
function latestPerFingerprint<T extends { id: string; record: KeyRecord }>(records: readonly T[]): T[] {
  const latest = new Map<string, T>();
  for (const r of records) {
    const seen = latest.get(r.record.key.fingerprint);
    if (seen === undefined || r.record.written > seen.record.written || (r.record.written === seen.record.written && compare(r.id, seen.id) > 0)) {
      latest.set(r.record.key.fingerprint, r);
    }
  }
  return [...latest.values()];
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function tampered(): StoreUnavailableError {
  return new StoreUnavailableError('A KMIP object carries tags that do not match its record: the server data was damaged or tampered with');
}
