import type { KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { jwtVerify, type JWTPayload } from 'jose';

/** A LogEntry as received, with its Struct payload turned back into plain JSON. */
export interface ReceivedEntry {
  readonly logName: string;
  readonly severity: string;
  readonly timestamp: Date | undefined;
  readonly jsonPayload: Record<string, unknown> | undefined;
  readonly textPayload: string | undefined;
  readonly resource: { type: string; labels: Record<string, string> } | undefined;
  readonly labels: Record<string, string>;
}

/** One WriteLogEntries call as received. */
export interface ReceivedWrite {
  readonly logName: string;
  readonly resource: { type: string; labels: Record<string, string> } | undefined;
  readonly entryCount: number;
  /** The verified claims of the caller's self-signed JWT. */
  readonly claims: JWTPayload;
  readonly metadata: Record<string, unknown>;
}

export interface CloudLoggingServerOptions {
  /** The server's TLS certificate and key (PEM); clients must trust the issuing CA. */
  readonly cert: string;
  readonly key: string;
  /** The service account allowed to write: its email and public key, to verify its JWTs. */
  readonly serviceAccount: { readonly email: string; readonly publicKey: KeyObject };
  /** The only project it may write to. */
  readonly projectId: string;
}

const LOGGING_WRITE_SCOPE = 'https://www.googleapis.com/auth/logging.write';

/**
 * A stand-in for Google Cloud Logging: a gRPC server over TLS implementing
 * google.logging.v2.LoggingServiceV2/WriteLogEntries from the .proto files that the Google client
 * library itself ships (@google-cloud/logging-api, google-gax for google/api and google/rpc).
 *
 * Like Google, it refuses a call without valid credentials (UNAUTHENTICATED): the library sends
 * `authorization: Bearer <JWT>` signed with the service account's private key (a self-signed JWT,
 * AIP-4111, used because the generated client sets useJWTAccessWithScope), which this verifies with
 * the account's public key, with `iss`/`sub` the account and the logging.write scope. And like
 * Google, it refuses a log of another project (PERMISSION_DENIED).
 */
export class CloudLoggingServer {
  readonly entries: ReceivedEntry[] = [];
  readonly writes: ReceivedWrite[] = [];
  /** Why calls were refused. */
  readonly refusals: string[] = [];
  private readonly server = new grpc.Server();
  private boundPort = 0;

  private constructor(private readonly options: CloudLoggingServerOptions) {}

  static async start(options: CloudLoggingServerOptions): Promise<CloudLoggingServer> {
    const stand = new CloudLoggingServer(options);
    const definition = protoLoader.loadSync('google/logging/v2/logging.proto', {
      includeDirs: shippedProtoDirs(),
      keepCase: false,
      longs: String,
      enums: String,
      defaults: false,
      oneofs: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      google: { logging: { v2: { LoggingServiceV2: grpc.ServiceClientConstructor } } };
    };
    stand.server.addService(loaded.google.logging.v2.LoggingServiceV2.service, {
      WriteLogEntries: (call: grpc.ServerUnaryCall<WriteLogEntriesRequest, object>, callback: grpc.sendUnaryData<object>) => {
        stand.writeLogEntries(call).then(
          () => callback(null, {}),
          (error: unknown) => callback(error as grpc.ServiceError),
        );
      },
    });
    const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(options.cert), private_key: Buffer.from(options.key) }]);
    stand.boundPort = await new Promise<number>((resolve, reject) => {
      stand.server.bindAsync('127.0.0.1:0', credentials, (error, port) => (error ? reject(error) : resolve(port)));
    });
    return stand;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Resolves once `predicate` holds for the entries so far; rejects after `timeoutMs`. */
  async waitFor(predicate: (entries: readonly ReceivedEntry[]) => boolean, timeoutMs = 20_000): Promise<readonly ReceivedEntry[]> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.entries)) {
      if (Date.now() > deadline) {
        throw new Error(`Cloud Logging stand-in: condition not met within ${timeoutMs} ms (${this.entries.length} entries; refusals: ${this.refusals.join('; ')})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.entries;
  }

  async close(): Promise<void> {
    this.server.forceShutdown();
  }

  private async writeLogEntries(call: grpc.ServerUnaryCall<WriteLogEntriesRequest, object>): Promise<void> {
    const claims = await this.authenticate(call.metadata);
    const request = call.request;
    const entries = request.entries ?? [];
    const project = `projects/${this.options.projectId}/logs/`;
    for (const entry of entries) {
      const logName = entry.logName || request.logName || '';
      if (!logName.startsWith(project)) {
        this.refusals.push(`log ${logName} is not in project ${this.options.projectId}`);
        throw serviceError(grpc.status.PERMISSION_DENIED, `The caller does not have permission to write to ${logName}`);
      }
    }
    this.writes.push({
      logName: request.logName ?? '',
      resource: plainResource(request.resource),
      entryCount: entries.length,
      claims,
      metadata: call.metadata.getMap(),
    });
    for (const entry of entries) {
      this.entries.push({
        logName: entry.logName || request.logName || '',
        severity: entry.severity ?? 'DEFAULT',
        timestamp: entry.timestamp ? new Date(Number(entry.timestamp.seconds) * 1000 + Math.round((entry.timestamp.nanos ?? 0) / 1e6)) : undefined,
        jsonPayload: entry.jsonPayload ? structToJson(entry.jsonPayload) : undefined,
        textPayload: entry.textPayload,
        resource: plainResource(entry.resource ?? request.resource),
        labels: { ...(request.labels ?? {}), ...(entry.labels ?? {}) },
      });
    }
  }

  private async authenticate(metadata: grpc.Metadata): Promise<JWTPayload> {
    const header = String(metadata.get('authorization')[0] ?? '');
    const token = /^Bearer (\S+)$/.exec(header)?.[1];
    if (token === undefined) {
      this.refusals.push('no bearer credentials');
      throw serviceError(grpc.status.UNAUTHENTICATED, 'Request is missing required authentication credential.');
    }
    try {
      const { payload } = await jwtVerify(token, this.options.serviceAccount.publicKey, {
        algorithms: ['RS256'],
        issuer: this.options.serviceAccount.email,
        subject: this.options.serviceAccount.email,
      });
      const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
      if (!scopes.includes(LOGGING_WRITE_SCOPE) && !String(payload.aud ?? '').startsWith('https://logging.googleapis.com')) {
        throw new Error(`neither the ${LOGGING_WRITE_SCOPE} scope nor the logging audience`);
      }
      return payload;
    } catch (error) {
      this.refusals.push(`invalid credentials: ${(error as Error).message}`);
      throw serviceError(grpc.status.UNAUTHENTICATED, 'Request had invalid authentication credentials.');
    }
  }
}

/** The directories of the .proto files shipped by the client library and its google-gax. */
function shippedProtoDirs(): string[] {
  const require = createRequire(import.meta.url);
  const api = require.resolve('@google-cloud/logging-api');
  const gax = createRequire(api).resolve('google-gax');
  // Both resolve to build/src/index.js; the protos are in build/protos.
  return [join(dirname(api), '..', 'protos'), join(dirname(gax), '..', 'protos')];
}

interface Timestamp {
  seconds: string;
  nanos?: number;
}
interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}
interface ProtoValue {
  kind?: string;
  nullValue?: string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoValue[] };
}
interface ProtoResource {
  type?: string;
  labels?: Record<string, string>;
}
interface ProtoLogEntry {
  logName?: string;
  severity?: string;
  timestamp?: Timestamp;
  jsonPayload?: ProtoStruct;
  textPayload?: string;
  resource?: ProtoResource;
  labels?: Record<string, string>;
}
interface WriteLogEntriesRequest {
  logName?: string;
  resource?: ProtoResource;
  labels?: Record<string, string>;
  entries?: ProtoLogEntry[];
}

function plainResource(resource: ProtoResource | undefined): ReceivedEntry['resource'] {
  return resource === undefined ? undefined : { type: resource.type ?? '', labels: { ...(resource.labels ?? {}) } };
}

/** google.protobuf.Struct as received by proto-loader, back to JSON. */
export function structToJson(struct: ProtoStruct): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(struct.fields ?? {})) out[name] = valueToJson(value);
  return out;
}

function valueToJson(value: ProtoValue): unknown {
  switch (value.kind) {
    case 'nullValue':
      return null;
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return structToJson(value.structValue ?? {});
    case 'listValue':
      return (value.listValue?.values ?? []).map(valueToJson);
    default:
      return undefined;
  }
}

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}
