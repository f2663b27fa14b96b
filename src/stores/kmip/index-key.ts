import { randomBytes } from 'node:crypto';
import type { Logger } from '../../logging/logger.js';
import type { KmipClient } from './kmip-client.js';
import { checked } from './kmip-client.js';
import { ObjectType, ResultReason, ResultStatus, SecretDataType } from './kmip-enums.js';
import { KmipUnavailableError } from './kmip-errors.js';
import {
  applicationSpecificInformationAttribute,
  get,
  getAttributes,
  locate,
  nameAttribute,
  objectTypeAttribute,
  readAttributes,
  readLocated,
  readSecretDataMaterial,
  readUniqueIdentifier,
  registerSecretData,
  type BatchItemRequest,
} from './kmip-messages.js';

/** The Name of the Secret Data object that holds the index key; the same for every EKM of a deployment. */
export const INDEX_KEY_NAME = 'flowcrypt-ekm index key v1';
export const APPLICATION_NAMESPACE = 'flowcrypt-ekm';
const INDEX_KEY_BYTES = 32;
/** How long start-up may wait for a race between EKM processes creating the key to settle. */
const SETTLE_LIMIT_MS = 15_000;

/** The attributes the index key is registered with and found by. */
const indexKeyTags = () => [nameAttribute(INDEX_KEY_NAME), applicationSpecificInformationAttribute(APPLICATION_NAMESPACE, 'index-key-v1')];

/** Locate of the index key: one round trip, also what the store's health probe sends. */
export const locateIndexKey = (maximumItems?: number) => locate([objectTypeAttribute(ObjectType.SecretData), ...indexKeyTags()], maximumItems);

/** The index key and the server's identifier of the object holding it. */
export interface IndexKey {
  readonly uniqueIdentifier: string;
  readonly key: Buffer;
}

/**
 * Finds, or creates on first use, the HMAC key that turns emails and fingerprints into the tags
 * records are found by, so that no plaintext email is ever an attribute on the server. It lives on
 * the KMIP server itself so that every EKM process and host sharing the server derives the same tags.
 *
 * KMIP 1.0 has no create-if-absent, so processes starting together on an empty server may each
 * register one. All of them then pick the same winner: the object with the earliest Initial Date
 * (ties: the smallest identifier), chosen only once the server's clock is 2 s past that date, when
 * every object of that second is visible to Locate. The losers are left in place (harmless, and
 * destroying them could race with a process that has not chosen yet). A key is only ever created on
 * a server that holds no EKM record this client can see (`locateAnyRecord` finds none), and only
 * when `mayCreate`: a KMIP server shows each client only the objects its policy lets it see (PyKMIP:
 * those its certificate's CN registered), so a host with the wrong identity would otherwise make a
 * key of its own and answer "no keys" for every user, and clients delete keys the EKM does not return.
 */
export async function resolveIndexKey(client: KmipClient, logger: Logger, locateAnyRecord: BatchItemRequest, mayCreate: boolean): Promise<IndexKey> {
  const started = Date.now();
  for (let registered = false; ; ) {
    const located = await client.batch([locateIndexKey()]);
    const ids = readLocated(checked(located.items[0]!, 'Locate'));
    if (ids.length === 0) {
      if (registered) throw new KmipUnavailableError('The KMIP server does not find the index key the EKM just registered', true);
      // A new key would hide every record tagged with the old one: never make one over existing records.
      if (readLocated(checked((await client.batch([locateAnyRecord])).items[0]!, 'Locate')).length > 0) {
        throw new KmipUnavailableError(
          `The KMIP server holds EKM key records but not the index key that finds them (Secret Data named "${INDEX_KEY_NAME}"): ` +
            'restore it from a backup of the KMIP server; the EKM will not replace it',
          true,
        );
      }
      if (!mayCreate) {
        throw new KmipUnavailableError(
          'The KMIP server holds no EKM index key this client may see. On a new server, run `flowcrypt-ekm --test-store-connection` once ' +
            'to set it up. If other EKM hosts already keep keys there, this host must use a client identity the server lets see their ' +
            'objects (PyKMIP: the same certificate subject CN as theirs)',
          true,
        );
      }
      const material = randomBytes(INDEX_KEY_BYTES);
      const id = readUniqueIdentifier(
        checked((await client.batch([registerSecretData(SecretDataType.Seed, material, indexKeyTags())])).items[0]!, 'Register'),
      );
      logger.warn('Registered a new EKM index key on the KMIP server: no EKM had used it with this client identity before', { uniqueIdentifier: id });
      registered = true;
      continue;
    }
    const dated = await initialDates(client, ids);
    const earliest = dated.reduce((a, b) => (b.date < a.date || (b.date === a.date && compareIds(b.id, a.id) < 0) ? b : a), dated[0]!);
    const waitSeconds = Number(earliest.date + 2n - located.timeStamp);
    if (waitSeconds > 0) {
      if (Date.now() - started > SETTLE_LIMIT_MS) throw new KmipUnavailableError("The KMIP server's clock does not advance past the index key's Initial Date", true);
      await new Promise((r) => setTimeout(r, waitSeconds * 1000));
      continue;
    }
    const payload = checked((await client.batch([get(earliest.id)])).items[0]!, 'Get');
    const key = Buffer.from(readSecretDataMaterial(payload).material);
    if (key.length !== INDEX_KEY_BYTES) throw new KmipUnavailableError(`The EKM index key object ${earliest.id} on the KMIP server is damaged`, true);
    if (dated.length > 1) logger.debug('Several EKM index keys found; using the earliest', { count: dated.length, uniqueIdentifier: earliest.id });
    return { uniqueIdentifier: earliest.id, key };
  }
}

async function initialDates(client: KmipClient, ids: readonly string[]): Promise<{ id: string; date: bigint }[]> {
  const response = await client.batch(ids.map((id) => getAttributes(id, ['Initial Date'])));
  const dated: { id: string; date: bigint }[] = [];
  for (const [i, item] of response.items.entries()) {
    if (item.status !== ResultStatus.Success && item.reason === ResultReason.ItemNotFound) continue;
    const attribute = readAttributes(checked(item, 'Get Attributes')).find((a) => a.name === 'Initial Date');
    if (attribute?.value.type !== 'DateTime') throw new KmipUnavailableError('The KMIP server gives no Initial Date for the EKM index key', true);
    dated.push({ id: ids[i]!, date: attribute.value.value });
  }
  if (dated.length === 0) throw new KmipUnavailableError('The EKM index key vanished from the KMIP server while being read', true);
  return dated;
}

/** Numeric identifiers (PyKMIP's) by value, others (UUIDs) as strings. */
function compareIds(a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  return a < b ? -1 : a > b ? 1 : 0;
}
