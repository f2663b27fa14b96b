import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/logging/create-logger.js';
import { registry } from '../../src/metrics/ekm-metrics.js';
import { StdoutCapture } from '../support/capture-stdout.js';
import { freePort } from '../../testbed/processes.js';

describe('log entries lost per output, in the metrics', () => {
  it('counts the entries a Splunk collector that cannot be reached did not take', async () => {
    const port = await freePort(); // nothing listens there: every delivery fails
    const lost = async () => (await registry.getSingleMetric('ekm_log_entries_lost_total')!.get()).values.find((v) => v.labels.output === 'SplunkHttpLogger' && v.labels.reason === 'failed')?.value ?? 0;
    const before = await lost();
    // The loss report goes to stdout: kept out of the test runner's output.
    const capture = new StdoutCapture().start();
    try {
      const logger = createLogger({ types: ['SplunkHttpLogger'], level: 'info', stackdriver: undefined, splunk: { url: `http://127.0.0.1:${port}`, token: 'metrics-test-token', disableCertificateValidation: false } });
      for (let i = 0; i < 3; i++) logger.info('an entry the collector will not get', { i });
      await logger.flush();
    } finally {
      capture.stop();
    }
    assert.equal(await lost(), before + 3);
    assert.doesNotMatch(await registry.metrics(), /metrics-test-token/);
  });
});
