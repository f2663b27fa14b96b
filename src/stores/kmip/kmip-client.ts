import { createSecureContext } from 'node:tls';
import { rootCertificates } from 'node:tls';
import type { TlsIdentity } from '../../tls/pkcs12.js';
import { KmipConnectionPool, type KmipPoolOptions } from './kmip-connection-pool.js';
import { MAX_RESPONSE_BYTES, trustAnchorsFromPem, type KmipEndpoint } from './kmip-connection.js';
import { READ_ONLY_OPERATIONS, ResultReason, ResultStatus } from './kmip-enums.js';
import { KmipOperationError, KmipUnavailableError } from './kmip-errors.js';
import { KmipProtocolError, readResponseMessage, requestMessage, type BatchItemRequest, type BatchItemResult } from './kmip-messages.js';
import { TtlvDecodeError, decodeTtlv, encodeTtlv } from './ttlv-codec.js';

/** Everything a KmipClient needs, already loaded from the config. */
export interface KmipClientSettings {
  readonly host: string;
  readonly port: number;
  /** The EKM's identity (store.kmip.key.file). */
  readonly identity: TlsIdentity;
  /** PEM CA certificates of truststore.file; undefined: the system CAs. */
  readonly truststore: readonly string[] | undefined;
  /** The truststore property and file, for messages; unused with the system CAs. */
  readonly truststoreFile: string | undefined;
  readonly pool: KmipPoolOptions;
}

/** The answer to a batch: the server's clock and one result per request item, in order. */
export interface BatchResponse {
  readonly timeStamp: bigint;
  readonly items: readonly BatchItemResult[];
}

/**
 * A KMIP 1.0 client over mutual TLS: encodes a batch into one Request Message, sends it in one
 * write on a pooled connection, and decodes the Response Message. Throws KmipUnavailableError
 * when the server cannot be used (including when it refuses the EKM's identity) and
 * KmipOperationError from `one()` when the server refuses the operation.
 */
export class KmipClient {
  private readonly pool: KmipConnectionPool;

  constructor(settings: KmipClientSettings) {
    const identity = 'pfx' in settings.identity
      ? { pfx: settings.identity.pfx, passphrase: settings.identity.passphrase }
      : // A chain after the leaf is sent to the server; it must not become trusted (`ca` would).
        { key: settings.identity.key, cert: [settings.identity.cert, ...settings.identity.ca].join('\n') };
    const trusted = settings.truststore ?? rootCertificates;
    const endpoint: KmipEndpoint = {
      host: settings.host,
      port: settings.port,
      secureContext: createSecureContext({ ...identity, ca: [...trusted] }),
      trustAnchors: trustAnchorsFromPem(trusted),
      trustSource: settings.truststore === undefined ? 'the system CAs (truststore.file is not set)' : `truststore.file ${settings.truststoreFile ?? ''}`.trim(),
    };
    this.pool = new KmipConnectionPool(endpoint, settings.pool);
  }

  /** Sends the items as one batch; a failed item is reported in its result, not thrown. */
  async batch(items: readonly BatchItemRequest[]): Promise<BatchResponse> {
    // Announce our limit: PyKMIP otherwise refuses answers over 1 MB (Response Too Large).
    const message = encodeTtlv(requestMessage(items, MAX_RESPONSE_BYTES));
    const readOnly = items.every((i) => READ_ONLY_OPERATIONS.has(i.operation));
    const response = await this.pool.send(message, readOnly, (raw) => {
      try {
        return readResponseMessage(decodeTtlv(raw), items.length);
      } catch (e) {
        if (e instanceof TtlvDecodeError || e instanceof KmipProtocolError) {
          throw new KmipUnavailableError(`The KMIP server's answer could not be read (${e.message})`, true, { cause: e });
        }
        throw e;
      }
    });
    if (response.items.some((i) => i.reason === ResultReason.AuthenticationNotSuccessful)) {
      throw new KmipUnavailableError(
        'The KMIP server did not accept the EKM (Authentication Not Successful): the certificate in store.kmip.key.file ' +
          'must carry extendedKeyUsage=clientAuth and be one the server is configured to accept',
        true,
      );
    }
    if (response.items.length < items.length) {
      const failed = response.items.find((i) => i.status !== ResultStatus.Success);
      throw new KmipOperationError('batch', failed?.reason, failed?.message);
    }
    return response;
  }

  /** Sends one operation and returns its Response Payload; throws KmipOperationError when it failed. */
  async one(item: BatchItemRequest, operationName: string): Promise<BatchItemResult['payload']> {
    const [result] = (await this.batch([item])).items;
    return checked(result!, operationName);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** The payload of a successful result; throws KmipOperationError for a failed one. */
export function checked(result: BatchItemResult, operationName: string): BatchItemResult['payload'] {
  if (result.status !== ResultStatus.Success) throw new KmipOperationError(operationName, result.reason, result.message);
  return result.payload;
}
