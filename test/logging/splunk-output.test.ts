import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LoggerConfig, LogLevel } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/logging/create-logger.js';
import { validateSplunkSettings } from '../../src/logging/splunk-output.js';
import { StdoutCapture } from '../support/capture-stdout.js';
import { SplunkHecReceiver } from '../support/splunk-hec-receiver.js';
import { TestPki } from '../../testbed/test-pki.js';

const TOKEN = '327bfa46-1c2d-4e5f-8a9b-0c1d2e3f4a5b';

function splunkConfig(url: string, options: { level?: LogLevel; token?: string; disableCertificateValidation?: boolean } = {}): LoggerConfig {
  return {
    types: ['SplunkHttpLogger'],
    level: options.level ?? 'info',
    stackdriver: undefined,
    splunk: { url, token: options.token ?? TOKEN, disableCertificateValidation: options.disableCertificateValidation ?? false },
  };
}

describe('SplunkHttpLogger', () => {
  const pki = new TestPki();
  const selfSigned = new TestPki('Some Other CA');
  let collector: SplunkHecReceiver;
  let untrusted: SplunkHecReceiver;
  const stdout = new StdoutCapture();

  before(async () => {
    // The test process trusts the test CA the way an operator's host trusts its own CA (NODE_EXTRA_CA_CERTS
    // is read at start, so the in-process equivalent is the global agent's CA list).
    const cert = pki.issue('splunk', { hosts: ['localhost', '127.0.0.1'] });
    collector = await SplunkHecReceiver.start({ token: TOKEN, cert: cert.certPem, key: cert.keyPem });
    const other = selfSigned.issue('splunk-untrusted', { hosts: ['localhost', '127.0.0.1'] });
    untrusted = await SplunkHecReceiver.start({ token: TOKEN, cert: other.certPem, key: other.keyPem });
    stdout.start();
  });
  after(async () => {
    stdout.stop();
    await collector.close();
    await untrusted.close();
    pki.remove();
    selfSigned.remove();
  });

  it('posts each entry as a JSON event with the token, at the configured level and above', async () => {
    collector.events.length = 0;
    // Certificate validation is on by default; the test CA is not a system CA, so this test turns it
    // off, and the next test shows that with validation on an unknown CA is refused.
    const logger = createLogger(splunkConfig(`${collector.url}/`, { level: 'info', disableCertificateValidation: true }));
    const request = logger.child({ requestId: 'req-1' });
    request.trace('trace entry');
    request.debug('debug entry');
    request.info('info entry', { fingerprints: ['A1B2C3D4E5F60718'] });
    request.warn('warn entry');
    request.error('error entry', { stack: 'Error: x\n    at f (file.js:1:1)' });
    await logger.flush();
    const events = await collector.waitFor((e) => e.length >= 3);
    const entries = events.filter((e) => String(e.event.message).endsWith(' entry'));
    assert.deepEqual(entries.map((e) => e.event.message).sort(), ['error entry', 'info entry', 'warn entry']);
    // The start-up warning about the disabled validation goes to every output, Splunk included.
    assert.ok(events.some((e) => e.event.level === 'warn' && String(e.event.message).includes('certificate is not verified')));
    const info = events.find((e) => e.event.message === 'info entry');
    assert.ok(info);
    assert.equal(info.event.level, 'info');
    assert.equal(info.event.requestId, 'req-1');
    assert.equal(info.event.worker, 'primary');
    assert.match(String(info.event.time), /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual(info.event.fingerprints, ['A1B2C3D4E5F60718']);
    assert.equal(info.sourcetype, '_json');
    assert.equal(info.source, 'flowcrypt-ekm');
    assert.equal(info.index, undefined, "the token's default index, not winston-splunk-httplogger's 'winston-index'");
    const accepted = collector.requests.filter((r) => r.status === 200);
    assert.ok(accepted.every((r) => r.headers.authorization === `Splunk ${TOKEN}` && r.path === '/services/collector/event'));
  });

  it('refuses a collector whose certificate is not trusted, unless certificate validation is disabled', async () => {
    const refused = createLogger(splunkConfig(untrusted.url, { disableCertificateValidation: false }));
    refused.error('must not arrive');
    await refused.flush();
    assert.equal(untrusted.events.length, 0);
    assert.equal(untrusted.requests.length, 0, 'the TLS handshake failed, so no request carried the token');
    const loss = stdout.records.find((r) => r.output === 'SplunkHttpLogger' && (/certificate/i.exec(String(r.lastError))));
    assert.ok(loss, 'a line on stdout says entries were lost and why');
    assert.equal(loss.level, 'warn');

    const accepted = createLogger(splunkConfig(untrusted.url, { disableCertificateValidation: true }));
    accepted.error('arrives');
    await accepted.flush();
    assert.deepEqual(untrusted.events.map((e) => e.event.message).filter((m) => m === 'arrives'), ['arrives']);
  });

  it('works with a token that has indexer acknowledgement on (a request channel is sent)', async () => {
    const cert = pki.issue('splunk-ack', { hosts: ['127.0.0.1'] });
    const acking = await SplunkHecReceiver.start({ token: TOKEN, cert: cert.certPem, key: cert.keyPem, acknowledgement: true });
    try {
      const logger = createLogger(splunkConfig(acking.url, { disableCertificateValidation: true }));
      logger.info('acknowledged entry');
      await logger.flush();
      await acking.waitFor((events) => events.some((e) => e.event.message === 'acknowledged entry'));
      assert.ok(acking.requests.every((r) => r.status === 200));
    } finally {
      await acking.close();
    }
  });

  it('a wrong token is refused by the collector (403) and reported on stdout, without the token', async () => {
    const before = collector.requests.length;
    const logger = createLogger(splunkConfig(collector.url, { token: 'wrong-token-0000', disableCertificateValidation: true }));
    logger.info('refused');
    await logger.flush();
    const answered = collector.requests.slice(before);
    assert.ok(answered.length > 0 && answered.every((r) => r.status === 403));
    const loss = stdout.records.find((r) => r.output === 'SplunkHttpLogger' && String(r.lastError).includes('Invalid token'));
    assert.ok(loss, `expected a loss report, got ${JSON.stringify(stdout.records.slice(-3))}`);
    assert.ok(!stdout.lines.join('\n').includes('wrong-token-0000'));
    assert.ok(!stdout.lines.join('\n').includes(TOKEN));
  });

  it('start-up validation names the property and never shows the token', () => {
    const bad: [string, string, RegExp][] = [
      ['not a url', TOKEN, /logger\.splunk\.url: 'not a url' is not a URL/],
      ['ftp://splunk:8088', TOKEN, /must be an http:\/\/ or https:\/\/ URL/],
      ['https://admin:changeme@splunk:8088', TOKEN, /must not contain a user name or password/],
      ['https://splunk:8088', 'has space', /logger\.splunk\.token/],
      ['https://splunk:8088', '', /logger\.splunk\.token/],
    ];
    for (const [url, token, message] of bad) {
      assert.throws(() => createLogger(splunkConfig(url, { token })), (error: unknown) => {
        assert.ok(error instanceof ConfigError, `${url}: ${String(error)}`);
        assert.match(error.message, message);
        assert.ok(!error.message.includes('changeme'));
        if (token !== '') assert.ok(!error.message.includes(token));
        return true;
      });
    }
  });

  it('warns at start when certificate validation is off or the token would travel over plain http', async () => {
    const logger = createLogger({ ...splunkConfig(collector.url, { disableCertificateValidation: true }), types: ['StdoutLogger', 'SplunkHttpLogger'] });
    await logger.flush();
    assert.ok(stdout.records.some((r) => r.level === 'warn' && String(r.message).startsWith("logger.splunk.disable.certificate.validation=true")));
    const plain = createLogger({ ...splunkConfig('http://splunk.example.com:8088', { disableCertificateValidation: false }), types: ['StdoutLogger', 'SplunkHttpLogger'] });
    await plain.flush();
    assert.ok(stdout.records.some((r) => r.level === 'warn' && String(r.message).startsWith("logger.splunk.url is http:")));
  });

  it('takes the event endpoint from a base URL and keeps a full endpoint URL', () => {
    assert.deepEqual(validateSplunkSettings({ url: 'https://splunk:8088', token: TOKEN, disableCertificateValidation: false }),
      { protocol: 'https', host: 'splunk', port: 8088, path: '/services/collector/event' });
    assert.deepEqual(validateSplunkSettings({ url: 'https://http-inputs-acme.splunkcloud.com/services/collector/event', token: TOKEN, disableCertificateValidation: false }),
      { protocol: 'https', host: 'http-inputs-acme.splunkcloud.com', port: 443, path: '/services/collector/event' });
    assert.deepEqual(validateSplunkSettings({ url: 'http://[::1]:8088/splunk/', token: TOKEN, disableCertificateValidation: false }),
      { protocol: 'http', host: '::1', port: 8088, path: '/splunk/services/collector/event' });
  });
});
