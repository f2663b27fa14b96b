import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import winston from 'winston';
import { BoundedOutput, type LogInfo, type LossReport } from '../../src/logging/bounded-output.js';


function loggerWith(output: BoundedOutput): winston.Logger {
  return winston.createLogger({ level: 'info', transports: [output] });
}

describe('BoundedOutput', () => {
  it('delivers every entry, in order, with at most `concurrency` deliveries in flight', async () => {
    const delivered: unknown[] = [];
    const started: unknown[] = [];
    const losses: LossReport[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const output = new BoundedOutput({
      output: 'Test',
      concurrency: 3,
      onLoss: (report) => losses.push(report),
      deliver: ([info, ...more]: readonly LogInfo[], done) => {
        assert.equal(more.length, 0, 'one record per delivery by default');
        started.push(info?.n);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        setTimeout(() => {
          inFlight--;
          delivered.push(info?.n);
          done();
        }, 5);
      },
    });
    const logger = loggerWith(output);
    for (let n = 0; n < 30; n++) logger.info('entry', { n });
    await output.drain(5000);
    assert.equal(delivered.length, 30);
    assert.deepEqual(started, Array.from({ length: 30 }, (_, n) => n), 'handed to deliver in order');
    assert.deepEqual(losses, [], 'nothing should be lost');
    assert.equal(maxInFlight, 3);
    assert.deepEqual(output.totals, { accepted: 30, delivered: 30, dropped: 0, failed: 0 });
  });

  it('sends what queued up during a delivery together, up to maxBatch', async () => {
    const batches: number[][] = [];
    const losses: LossReport[] = [];
    const output = new BoundedOutput({
      output: 'Batching',
      concurrency: 1,
      maxBatch: 10,
      onLoss: (report) => losses.push(report),
      deliver: (batch, done) => {
        batches.push(batch.map((info) => info.n as number));
        setTimeout(() => done(), 10);
      },
    });
    const logger = loggerWith(output);
    for (let n = 0; n < 25; n++) logger.info('entry', { n });
    await output.drain(5000);
    assert.deepEqual(batches.map((b) => b.length), [1, 10, 10, 4]);
    assert.deepEqual(losses, [], 'nothing should be lost');
    assert.deepEqual(batches.flat(), Array.from({ length: 25 }, (_, n) => n));
  });

  it('with lingerMs, records logged close together share one delivery', async () => {
    const batches: number[] = [];
    const losses: LossReport[] = [];
    const output = new BoundedOutput({
      output: 'Lingering',
      concurrency: 2,
      maxBatch: 50,
      lingerMs: 50,
      onLoss: (report) => losses.push(report),
      deliver: (batch, done) => {
        batches.push(batch.length);
        done();
      },
    });
    const logger = loggerWith(output);
    // In one turn, so that a loaded machine cannot stretch the gaps past lingerMs (without the
    // linger each record goes out alone).
    for (let n = 0; n < 5; n++) logger.info('entry', { n });
    await sleep(100);
    assert.deepEqual(batches, [5]);
    for (let n = 0; n < 120; n++) logger.info('burst', { n });
    await output.drain(1000);
    assert.deepEqual(batches, [5, 50, 50, 20], 'a full batch does not wait');
    assert.deepEqual(losses, [], 'nothing should be lost');
  });

  it('counts a failed batch as that many failed records', async () => {
    const reports: LossReport[] = [];
    const output = new BoundedOutput({
      output: 'Refusing',
      concurrency: 1,
      maxBatch: 5,
      reportIntervalMs: 0,
      onLoss: (report) => reports.push(report),
      deliver: (_batch, done) => setTimeout(() => done(new Error('Invalid token')), 5),
    });
    const logger = loggerWith(output);
    for (let n = 0; n < 6; n++) logger.info('entry', { n });
    await output.drain(2000);
    assert.deepEqual(output.totals, { accepted: 6, delivered: 0, dropped: 0, failed: 6 });
    assert.equal(reports.reduce((sum, r) => sum + r.failed, 0), 6);
  });

  it('never makes the caller wait on a destination that does not answer, drops beyond capacity and reports it once per interval', async () => {
    const reports: LossReport[] = [];
    const output = new BoundedOutput({
      output: 'Stuck',
      capacity: 100,
      concurrency: 2,
      deliveryTimeoutMs: 60_000,
      reportIntervalMs: 1_000,
      onLoss: (report) => reports.push(report),
      deliver: () => undefined, // never answers
    });
    const logger = loggerWith(output);
    // winston's logger is a stream: entries past its buffer reach the output a few turns later, so
    // the test waits for the output to have seen them all (a fixed sleep was too short under load).
    const seen = async (n: number) => {
      const deadline = Date.now() + 10_000;
      while (output.totals.accepted + output.totals.dropped < n && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      assert.equal(output.totals.accepted + output.totals.dropped, n);
    };
    const started = process.hrtime.bigint();
    for (let n = 0; n < 10_000; n++) logger.info('entry', { n });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`10000 entries into a destination that never answers: ${ms.toFixed(1)} ms in the caller`);
    assert.ok(ms < 2000, `logging took ${ms} ms`);
    await seen(10_000);
    assert.equal(output.pending, 102); // 2 in flight + 100 queued
    // "At once": well within the 1 s interval, which only the reports after the first wait for.
    const firstBy = Date.now() + 500;
    while (reports.length === 0 && Date.now() < firstBy) await sleep(10);
    assert.equal(reports.length, 1, 'the first loss is reported at once');
    assert.equal(reports[0]?.dropped, 10_000 - 102);
    for (let n = 0; n < 50; n++) logger.info('more', { n });
    await seen(10_050);
    await sleep(50);
    assert.equal(reports.length, 1, 'not more than once per interval');
    await sleep(1_100);
    assert.equal(reports.length, 2);
    assert.equal(reports[1]?.dropped, 50);
    output.close();
  });

  it('counts failed and timed-out deliveries and frees their slots', async () => {
    const reports: LossReport[] = [];
    let calls = 0;
    const output = new BoundedOutput({
      output: 'Flaky',
      concurrency: 1,
      deliveryTimeoutMs: 50,
      reportIntervalMs: 0,
      onLoss: (report) => reports.push(report),
      deliver: (_info, done) => {
        calls++;
        if (calls === 1) done(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }));
        else if (calls === 2) return; // hangs: the timeout frees the slot
        else done();
      },
    });
    const logger = loggerWith(output);
    for (let n = 0; n < 3; n++) logger.info('entry', { n });
    await output.drain(2000);
    assert.deepEqual(output.totals, { accepted: 3, delivered: 1, dropped: 0, failed: 2 });
    const failed = reports.reduce((sum, r) => sum + r.failed, 0);
    assert.equal(failed, 2);
    assert.match(reports.map((r) => r.lastError).join(' '), /ECONNREFUSED|no answer within 50 ms/);
  });

  it('drain() waits a bounded time and reports what could not be delivered before exit', async () => {
    const reports: LossReport[] = [];
    const output = new BoundedOutput({
      output: 'Slow',
      concurrency: 1,
      onLoss: (report) => reports.push(report),
      deliver: (_info, done) => setTimeout(() => done(), 1000),
    });
    const logger = loggerWith(output);
    for (let n = 0; n < 5; n++) logger.info('entry', { n });
    const started = Date.now();
    await output.drain(100);
    assert.ok(Date.now() - started < 500);
    assert.equal(reports.at(-1)?.dropped, 4, 'the 4 queued entries are reported lost');
    output.close();
  });
});
