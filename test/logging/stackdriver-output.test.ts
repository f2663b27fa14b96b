// First: @grpc/grpc-js reads its default TLS roots when it is loaded (see grpc-test-roots.ts).
import { grpcTestPki } from '../support/grpc-test-roots.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LoggerConfig, LogLevel } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/logging/create-logger.js';
import type { StackdriverEndpoint } from '../../src/logging/stackdriver-output.js';
import { StdoutCapture } from '../support/capture-stdout.js';
import { CloudLoggingServer } from '../support/cloud-logging-server.js';
import { createTestServiceAccount, type TestServiceAccount } from '../support/service-account.js';

/*
 * How the real @google-cloud/logging-winston transport reaches the stand-in without Google:
 * - Endpoint: the generated LoggingServiceV2Client takes `apiEndpoint` and `port` (passed through
 *   LoggingWinston's options), here localhost:<stand-in port>; TLS is verified as for Google, against
 *   a test CA that grpc-js trusts through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH.
 * - No OAuth: the generated client sets `useJWTAccessWithScope`, so google-auth-library signs a JWT
 *   with the service account's private key itself (AIP-4111 self-signed JWT, scope logging.write)
 *   and sends it as `authorization: Bearer <jwt>`, never calling oauth2.googleapis.com. The stand-in
 *   verifies that JWT with the account's public key: an access token obtained from Google would fail.
 * - No metadata server: the output names its monitored resource (generic_node), so the library does
 *   not probe 169.254.169.254 to detect one. The project comes from the credentials file.
 */

function stackdriverConfig(file: string, level: LogLevel = 'info'): LoggerConfig {
  return { types: ['StackdriverLogger'], level, stackdriver: { credentialsFile: file }, splunk: undefined };
}

describe('StackdriverLogger', () => {
  let account: TestServiceAccount;
  let server: CloudLoggingServer;
  let endpoint: StackdriverEndpoint;
  const stdout = new StdoutCapture();

  before(async () => {
    account = createTestServiceAccount(grpcTestPki.dir);
    const cert = grpcTestPki.issue('cloud-logging', { hosts: ['localhost', '127.0.0.1'] });
    server = await CloudLoggingServer.start({
      cert: cert.certPem,
      key: cert.keyPem,
      serviceAccount: { email: account.email, publicKey: account.publicKey },
      projectId: account.projectId,
    });
    endpoint = { host: 'localhost', port: server.port };
    stdout.start();
  });
  after(async () => {
    stdout.stop();
    await server.close();
    grpcTestPki.remove();
  });

  it('writes entries with the severity of their level, in the project of the credentials file, at the configured level and above', async () => {
    const logger = createLogger(stackdriverConfig(account.file, 'debug'), { stackdriverEndpoint: endpoint });
    const request = logger.child({ requestId: 'req-7' });
    request.trace('trace entry');
    request.debug('debug entry');
    request.info('info entry', { fingerprints: ['A1B2C3D4E5F60718'] });
    request.warn('warn entry');
    request.error('error entry', { stack: 'Error: error entry\n    at handler (file:///srv/ekm/route.js:10:5)' });
    await logger.flush();
    const entries = await server.waitFor((e) => e.filter((x) => x.jsonPayload?.message !== undefined).length >= 4);
    const ours = entries.filter((e) => e.jsonPayload?.message !== undefined);
    const severities = Object.fromEntries(ours.map((e) => [String(e.jsonPayload?.message).split(' Error:')[0], e.severity]));
    assert.deepEqual(severities, { 'debug entry': 'DEBUG', 'info entry': 'INFO', 'warn entry': 'WARNING', 'error entry': 'ERROR' });
    // Error Reporting reads the stack from the message and groups by the service name.
    const error = ours.find((e) => e.severity === 'ERROR');
    assert.equal(error?.jsonPayload?.message, 'error entry Error: error entry\n    at handler (file:///srv/ekm/route.js:10:5)');
    assert.deepEqual(error?.jsonPayload?.serviceContext, { service: 'flowcrypt-ekm' });
    const info = ours.find((e) => e.jsonPayload?.message === 'info entry');
    assert.ok(info);
    assert.equal(info.logName, `projects/${account.projectId}/logs/flowcrypt-ekm`);
    assert.equal(info.resource?.type, 'generic_node');
    assert.equal(info.resource?.labels.project_id, account.projectId);
    const fields = info.jsonPayload?.metadata as Record<string, unknown>;
    assert.equal(fields.requestId, 'req-7');
    assert.equal(fields.worker, 'primary');
    assert.deepEqual(fields.fingerprints, ['A1B2C3D4E5F60718']);
    assert.equal(info.timestamp?.toISOString(), fields.time, 'the entry carries the time it was logged');
    const write = server.writes.at(-1);
    assert.equal(write?.claims.iss, account.email);
    assert.equal(write?.claims.scope, 'https://www.googleapis.com/auth/logging.write');
    assert.deepEqual(server.refusals, []);
  });

  it('with trace, trace entries arrive as DEBUG (Cloud Logging has nothing lower)', async () => {
    const logger = createLogger(stackdriverConfig(account.file, 'trace'), { stackdriverEndpoint: endpoint });
    logger.trace('a trace entry');
    await logger.flush();
    const entries = await server.waitFor((e) => e.some((x) => x.jsonPayload?.message === 'a trace entry'));
    assert.equal(entries.find((x) => x.jsonPayload?.message === 'a trace entry')?.severity, 'DEBUG');
  });

  it('credentials of another service account are refused by the API and the loss is reported on stdout', async () => {
    const stranger = createTestServiceAccount(grpcTestPki.dir, account.projectId, 'stranger');
    // Same project and email, another key: the JWT signature cannot be verified.
    const file = join(grpcTestPki.dir, 'stranger.json');
    writeFileSync(file, JSON.stringify({ type: 'service_account', project_id: account.projectId, client_email: account.email, private_key: stranger.privateKeyPem }));
    const logger = createLogger(stackdriverConfig(file), { stackdriverEndpoint: endpoint });
    logger.error('refused entry');
    await logger.flush();
    assert.ok(!server.entries.some((e) => e.jsonPayload?.message === 'refused entry'));
    const loss = stdout.records.find((r) => r.output === 'StackdriverLogger');
    assert.ok(loss, 'a line on stdout says entries were lost');
    assert.match(String(loss.lastError), /UNAUTHENTICATED|invalid authentication/i);
  });

  it('a Cloud Logging endpoint that is down does not hold up logging, and is reported on stdout', async () => {
    const dead: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const port = (dead.address() as { port: number }).port;
    const logger = createLogger(stackdriverConfig(account.file), { stackdriverEndpoint: { host: '127.0.0.1', port } });
    const seen = stdout.records.length;
    try {
      const started = process.hrtime.bigint();
      for (let n = 0; n < 1000; n++) logger.info('to nowhere', { n });
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      console.log(`1000 entries to a Cloud Logging endpoint that resets every connection: ${ms.toFixed(1)} ms in the caller`);
      assert.ok(ms < 1000);
      await logger.flush();
    } finally {
      dead.close();
    }
    // Only this logger's report: an earlier test leaves a StackdriverLogger loss line too.
    assert.ok(stdout.records.slice(seen).some((r) => r.output === 'StackdriverLogger' && Number(r.dropped) + Number(r.failed) > 0));
  });

  it('a bad credentials file is a ConfigError at start naming the property and file, never the key', () => {
    const dir = grpcTestPki.dir;
    const write = (name: string, content: string) => {
      const file = join(dir, name);
      writeFileSync(file, content);
      return file;
    };
    const cases: [string, RegExp][] = [
      [join(dir, 'missing.json'), /cannot read .*missing\.json \(ENOENT\)/],
      [write('not-json.json', 'project_id=x'), /is not JSON/],
      [write('user.json', JSON.stringify({ type: 'authorized_user', client_id: 'x', client_secret: 'y', refresh_token: 'z' })), /not a service account key file/],
      [write('no-project.json', JSON.stringify({ type: 'service_account', client_email: 'a@b', private_key: account.privateKeyPem })), /has no "project_id"/],
      [write('bad-key.json', JSON.stringify({ type: 'service_account', project_id: 'p', client_email: 'a@b', private_key: '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n' })), /"private_key" .* is not a PEM private key/],
    ];
    for (const [file, message] of cases) {
      assert.throws(() => createLogger(stackdriverConfig(file)), (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /^logger\.stackdriver\.credentials\.file: /);
        assert.match(error.message, message);
        assert.ok(error.message.includes(file));
        assert.ok(!error.message.includes('BEGIN'));
        return true;
      });
    }
  });
});
