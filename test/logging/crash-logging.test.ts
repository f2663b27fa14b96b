import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';

const LOGGING = resolve(import.meta.dirname, '../../src/logging');

function crashScript(body: string, batchStdout = false): { status: number | null; lines: Record<string, unknown>[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ekm-crash-'));
  const file = join(dir, 'crash.mjs');
  writeFileSync(file, `
    import { createLogger } from ${JSON.stringify(join(LOGGING, 'create-logger.js'))};
    import { logCrashes } from ${JSON.stringify(join(LOGGING, 'crash-logging.js'))};
    const logger = createLogger({ types: ['StdoutLogger'], level: 'info', stackdriver: undefined, splunk: undefined }, { batchStdout: ${batchStdout} });
    logCrashes(logger);
    ${body}
  `);
  const result = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 20_000 });
  rmSync(dir, { recursive: true, force: true });
  const lines = result.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: result.status, lines };
}

describe('logCrashes', () => {
  it('logs an uncaught exception at error with its stack, then exits 1', () => {
    const { status, lines } = crashScript(`setTimeout(() => { throw new TypeError('boom in a timer'); }, 10);`);
    assert.equal(status, 1);
    const entry = lines.find((l) => l.level === 'error');
    assert.ok(entry, JSON.stringify(lines));
    assert.equal(entry.message, 'Uncaught exception; the process exits');
    assert.equal(entry.error, 'TypeError');
    assert.match(String(entry.stack), /TypeError: boom in a timer\n\s+at /);
  });

  it('logs an unhandled rejection the same way', () => {
    const { status, lines } = crashScript(`Promise.reject(new Error('rejected'));`);
    assert.equal(status, 1);
    assert.match(String(lines.find((l) => l.level === 'error')?.stack), /Error: rejected/);
  });

  it('in a worker, whose lines are written once per event-loop turn, loses none of them', () => {
    const crashed = crashScript(`logger.info('pending line'); setTimeout(() => { throw new TypeError('boom'); }, 10);`, true);
    assert.equal(crashed.status, 1);
    assert.deepEqual(crashed.lines.map((l) => l.message), ['pending line', 'Uncaught exception; the process exits']);
    const exited = crashScript(`logger.info('written at exit'); process.exit(3);`, true);
    assert.equal(exited.status, 3);
    assert.deepEqual(exited.lines.map((l) => l.message), ['written at exit'], 'process.exit() in the same turn');
  });
});
