import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LoggerConfig, LogLevel } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger, validateLoggerConfig } from '../../src/logging/create-logger.js';
import { StdoutCapture } from '../support/capture-stdout.js';

const stdoutOnly = (level: LogLevel): LoggerConfig => ({ types: ['StdoutLogger'], level, stackdriver: undefined, splunk: undefined });
const LEVELS: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];

describe('createLogger with StdoutLogger', () => {
  const stdout = new StdoutCapture();
  before(() => stdout.start());
  after(() => stdout.stop());

  it('writes one JSON record per line: time, level, message, worker, request id and fields', async () => {
    const logger = createLogger(stdoutOnly('info'));
    logger.child({ requestId: 'req-1' }).info('hello', { status: 200, fingerprints: ['A1B2C3D4E5F60718'] });
    await logger.flush();
    const record = stdout.records.find((r) => r.message === 'hello');
    assert.ok(record);
    assert.deepEqual(Object.keys(record).sort(), ['fingerprints', 'level', 'message', 'requestId', 'status', 'time', 'worker']);
    assert.equal(record.worker, 'primary');
    assert.equal(record.requestId, 'req-1');
    assert.ok(!Number.isNaN(Date.parse(String(record.time))));
  });

  for (const level of LEVELS) {
    it(`logger.default.level=${level} writes ${level} and above only`, async () => {
      const logger = createLogger(stdoutOnly(level));
      for (const l of LEVELS) logger.log(l, `filter-${level}-${l}`);
      await logger.flush();
      const written = stdout.records.map((r) => String(r.message)).filter((m) => m.startsWith(`filter-${level}-`));
      assert.deepEqual(written, LEVELS.slice(LEVELS.indexOf(level)).map((l) => `filter-${level}-${l}`));
    });
  }

  it('removes secrets that reach it anyway: tokens, Authorization headers, key material, passwords', async () => {
    const jwt = 'eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJlbWFpbCI6ImFsaWNlQGV4YW1wbGUuY29tIn0.c2lnbmF0dXJlc2lnbmF0dXJl';
    const armored = '-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxcLYBGV0ZXN0AQgAsecretsecret\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\n';
    const logger = createLogger(stdoutOnly('trace'));
    logger.warn(`Rejected token ${jwt} from header Bearer ${jwt}`, {
      authorization: `Bearer ${jwt}`,
      idToken: jwt,
      decryptedPrivateKey: armored,
      body: `{"privateKey":${JSON.stringify(armored)}}`,
      storePassword: 'hunter2hunter2',
      details: [`Splunk 327bfa46-1c2d-4e5f-8a9b-0c1d2e3f4a5b`],
      email: 'alice@example.com',
    });
    await logger.flush();
    const line = stdout.lines.find((l) => l.includes('Rejected token'));
    assert.ok(line);
    for (const secret of [jwt, 'secretsecret', 'BEGIN PGP PRIVATE KEY', 'hunter2', '327bfa46']) {
      assert.ok(!line.includes(secret), `${secret} leaked: ${line}`);
    }
    const record = JSON.parse(line) as Record<string, unknown>;
    assert.equal(record.authorization, '[REDACTED]');
    assert.equal(record.email, 'alice@example.com', 'what is not a secret stays');
    assert.match(String(record.message), /^Rejected token \[REDACTED JWT\] from header Bearer \[REDACTED/);
  });

  it('leaves prose that merely looks like a credential scheme alone', async () => {
    const logger = createLogger(stdoutOnly('info'));
    const prose = 'Splunk collector unreachable; Basic authentication refused; Bearer authentication expected';
    logger.info(prose, { details: 'Bearer tokens only' });
    logger.info('opaque', { details: 'Bearer ya29.a0AfH6SMBx-opaque_token_value', basic: 'Basic YWxpY2U6c2VjcmV0cGFzcw==' });
    await logger.flush();
    assert.ok(stdout.records.some((r) => r.message === prose && r.details === 'Bearer tokens only'));
    const opaque = stdout.records.find((r) => r.message === 'opaque');
    assert.equal(opaque?.details, 'Bearer [REDACTED]');
    assert.equal(opaque?.basic, 'Basic [REDACTED]');
  });

  it('on a terminal, writes readable lines instead of JSON', async () => {
    const wasTTY = process.stdout.isTTY;
    process.stdout.isTTY = true;
    try {
      const logger = createLogger(stdoutOnly('info'));
      logger.child({ requestId: 'req-tty' }).warn('readable entry', { status: 503 });
      await logger.flush();
    } finally {
      process.stdout.isTTY = wasTTY;
    }
    const line = stdout.otherLines.find((l) => l.includes('readable entry'));
    assert.match(line ?? '', /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN {2}\[primary\] \[req-tty\] readable entry \{"status":503\}$/);
  });

  it('keeps each entry\'s fields in order after time, level, message and worker', async () => {
    const logger = createLogger(stdoutOnly('info'));
    logger.child({ requestId: 'req-order' }).info('ordered', { status: 200, level: 'not-a-level', message: 'not the message' });
    await logger.flush();
    const line = stdout.lines.find((l) => l.includes('"req-order"'));
    assert.deepEqual(Object.keys(JSON.parse(line ?? '{}') as object), ['time', 'level', 'message', 'worker', 'requestId', 'status']);
    assert.match(line ?? '', /"level":"info","message":"ordered"/, 'a field cannot replace the level or the message');
  });

  it('batched, as in the workers: writes an event-loop turn\'s lines together at its end, in order', async () => {
    const logger = createLogger(stdoutOnly('info'), { batchStdout: true });
    const start = stdout.lines.length;
    logger.info('batch-1');
    logger.child({ requestId: 'req-b' }).warn('batch-2');
    logger.debug('batch-not-written');
    assert.equal(stdout.lines.length, start, 'nothing is written during the turn');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(stdout.lines.slice(start).map((l) => (JSON.parse(l) as { message: string }).message), ['batch-1', 'batch-2']);
    logger.info('batch-3');
    await logger.flush();
    assert.equal((JSON.parse(stdout.lines.at(-1) ?? '{}') as { message?: string }).message, 'batch-3', 'flush() writes what is pending');
  });

  it('ignores entries logged after flush() instead of throwing', async () => {
    const logger = createLogger(stdoutOnly('info'));
    await logger.flush();
    assert.doesNotThrow(() => logger.error('too late'));
  });
});

describe('validateLoggerConfig', () => {
  it('is what the primary calls before forking; it opens nothing and names the property', () => {
    assert.doesNotThrow(() => validateLoggerConfig(stdoutOnly('info')));
    assert.throws(
      () => validateLoggerConfig({ types: ['StdoutLogger', 'SplunkHttpLogger'], level: 'info', stackdriver: undefined, splunk: { url: 'splunk:8088', token: 't', disableCertificateValidation: false } }),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith("logger.splunk.url: "),
    );
    assert.throws(
      () => validateLoggerConfig({ types: ['StackdriverLogger'], level: 'info', stackdriver: { credentialsFile: '/nonexistent/credentials.json' }, splunk: undefined }),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith("logger.stackdriver.credentials.file: cannot read /nonexistent/credentials.json"),
    );
  });
});
