import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import type * as LoggingWinstonModule from '@google-cloud/logging-winston';
import { ConfigError } from '../errors.js';
import { BoundedOutput, type LogInfo, type LossReport } from './bounded-output.js';

/** The property naming the service account key file. */
export const STACKDRIVER_PROPERTY = 'logger.stackdriver.credentials.file';
/** The log the entries go to: projects/<project>/logs/flowcrypt-ekm. */
export const STACKDRIVER_LOG_NAME = 'flowcrypt-ekm';

/**
 * Our levels as Cloud Logging severities (google.logging.type.LogSeverity). Cloud Logging has
 * nothing below DEBUG, so trace is DEBUG.
 */
const SEVERITIES: Readonly<Record<string, string>> = { error: 'ERROR', warn: 'WARNING', info: 'INFO', debug: 'DEBUG', trace: 'DEBUG' };
const SERVICE_CONTEXT = { service: 'flowcrypt-ekm' };
/** Most entries in one WriteLogEntries call. */
const MAX_BATCH = 100;

/** The part of @google-cloud/logging's Log used to write several entries in one call. */
interface CloudLog {
  entry(metadata: object, data: object): unknown;
  write(entries: unknown[], callback: (error: Error | null) => void): void;
  logging: { detectedResource?: object };
}

/** What the output needs from a service account credentials file. */
export interface StackdriverCredentials {
  readonly file: string;
  readonly projectId: string;
  readonly clientEmail: string;
}

/**
 * Where the Cloud Logging API is reached. Default logging.googleapis.com:443; another endpoint
 * serves a private or regional API address (and the tests' stand-in).
 */
export interface StackdriverEndpoint {
  readonly host: string;
  readonly port: number;
}

/**
 * Reads and checks `logger.stackdriver.credentials.file`: a Google Cloud service account key (JSON)
 * with the project, the account and a usable private key. Messages name the property and the file,
 * never the file's content.
 */
export function readStackdriverCredentials(file: string): StackdriverCredentials {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`${STACKDRIVER_PROPERTY}: cannot read ${file} (${code})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(`${STACKDRIVER_PROPERTY}: ${file} is not JSON; expected a Google Cloud service account key file`);
  }
  const fields = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  if (fields.type !== 'service_account') {
    throw new ConfigError(`${STACKDRIVER_PROPERTY}: ${file} is not a service account key file (its "type" must be "service_account")`);
  }
  for (const name of ['project_id', 'client_email', 'private_key']) {
    if (typeof fields[name] !== 'string' || fields[name] === '') {
      throw new ConfigError(`${STACKDRIVER_PROPERTY}: ${file} has no "${name}"`);
    }
  }
  try {
    createPrivateKey(fields.private_key as string);
  } catch {
    throw new ConfigError(`${STACKDRIVER_PROPERTY}: the "private_key" in ${file} is not a PEM private key`);
  }
  return { file, projectId: fields.project_id as string, clientEmail: fields.client_email as string };
}

/**
 * StackdriverLogger: entries go to Google Cloud Logging (gRPC WriteLogEntries) behind a
 * BoundedOutput, in the log `flowcrypt-ekm` of the project named in the credentials file, with the
 * severity of their level. The record's fields arrive as `jsonPayload.metadata`, its message as
 * `jsonPayload.message` (followed by the stack, if any, for Error Reporting), its time as the entry
 * timestamp: the shape @google-cloud/logging-winston gives them. Its transport is built for its
 * client and settings, but its log() makes one call per entry; entries that queue up while calls
 * are in flight are instead written together, in one call.
 *
 * Authentication: the client library signs a short-lived JWT with the service account's private key
 * itself (self-signed JWT, AIP-4111) rather than exchanging it for an OAuth token, so apart from the
 * API endpoint nothing is contacted.
 */
export function createStackdriverOutput(
  credentials: StackdriverCredentials,
  onLoss: (report: LossReport) => void,
  endpoint?: StackdriverEndpoint,
): BoundedOutput {
  // Not on Google Cloud, so say what this is rather than let the library probe the GCE metadata
  // server (169.254.169.254) to detect it. generic_node is Cloud Logging's type for one's own hosts.
  const resource = {
    type: 'generic_node',
    labels: { project_id: credentials.projectId, location: 'global', namespace: 'flowcrypt-ekm', node_id: os.hostname() },
  };
  const transport = new (loadLoggingWinston())({
    keyFilename: credentials.file,
    projectId: credentials.projectId,
    logName: STACKDRIVER_LOG_NAME,
    maxRetries: 1,
    ...(endpoint === undefined ? {} : { apiEndpoint: endpoint.host, port: endpoint.port }),
  });
  const cloudLog = transport.common.cloudLog as unknown as CloudLog;
  // The request-level resource is detected once per process unless already known (see above).
  cloudLog.logging.detectedResource = resource;

  return new BoundedOutput({
    output: 'StackdriverLogger',
    concurrency: 2,
    maxBatch: MAX_BATCH,
    lingerMs: 100,
    deliveryTimeoutMs: 20_000,
    onLoss,
    deliver: (batch: readonly LogInfo[], done) => {
      const entries = batch.map((info) => {
        // As @google-cloud/logging-winston's LoggingCommon.log builds an entry.
        const { message, level, ...fields } = Object.fromEntries(Object.entries(info)) as Record<string, unknown>;
        const stack = typeof fields.stack === 'string' ? fields.stack : undefined;
        const data = {
          // Our Logger passes only strings as messages; winston types them unknown.
          message: stack === undefined ? textOf(message) : `${textOf(message)} ${stack}`,
          metadata: fields,
          ...(stack === undefined ? {} : { serviceContext: SERVICE_CONTEXT }),
        };
        const time = typeof fields.time === 'string' ? new Date(fields.time) : new Date();
        return cloudLog.entry({ resource, timestamp: time, severity: SEVERITIES[String(level)] ?? 'DEFAULT' }, data);
      });
      cloudLog.write(entries, (error) => done(error));
    },
  });
}

/**
 * The Cloud Logging client, loaded on first use: with gRPC and protobufjs it takes seconds to load,
 * which every worker would pay at start (against the 1.5 s readiness target) whether or not
 * StackdriverLogger is configured. The package is CommonJS, so a synchronous require does it.
 */
function loadLoggingWinston(): typeof LoggingWinstonModule.LoggingWinston {
  return (createRequire(import.meta.url)('@google-cloud/logging-winston') as typeof LoggingWinstonModule).LoggingWinston;
}

function textOf(message: unknown): string {
  return typeof message === 'string' ? message : '';
}
