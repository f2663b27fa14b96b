/**
 * The Node.js 24 requirement: package.json's engines, the entry point's version check
 * (src/main.ts) and the bootstrap every npm script goes through (scripts/node24.sh).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';

const REPO = resolve(import.meta.dirname, '../..');
const MAIN = join(REPO, 'build/src/main.js');
const BOOTSTRAP = join(REPO, 'scripts/node24.sh');
const MAJOR = 24;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Result> {
  return new Promise((done) => {
    // The first run may install the pinned Node.js into the cache (a 50 MB download).
    execFile(file, args, { env, timeout: 300_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

const majorOf = (version: string) => Number(/^v?(\d+)\./.exec(version)?.[1]);

/** A Node.js of another major version on this machine (the system's Node.js 20 here), if any. */
async function otherNode(): Promise<{ path: string; version: string } | undefined> {
  const candidates = new Set(['/usr/bin/node', '/usr/local/bin/node', ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'node'))]);
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    const { code, stdout } = await run(path, ['--version']);
    if (code === 0 && majorOf(stdout.trim()) !== MAJOR) return { path, version: stdout.trim() };
  }
  return undefined;
}

const temporary: string[] = [];
after(() => temporary.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'ekm-node-runtime-'));
  temporary.push(dir);
  return dir;
};

/** A folder whose `node` claims to be Node.js 20, standing in for the system's older Node.js. */
function fakeOldNode(): string {
  const dir = tempDir();
  writeFileSync(join(dir, 'node'), '#!/bin/sh\ncase "$*" in --version) echo v20.20.2 ;; *) echo 20 ;; esac\n');
  chmodSync(join(dir, 'node'), 0o755);
  return dir;
}

/** What the command run by the bootstrap sees: its Node.js, npm's nodedir, the first PATH entry. */
const PROBE = ['node', '-p', 'JSON.stringify({ version: process.version, execPath: process.execPath, nodedir: process.env.npm_config_nodedir, path0: process.env.PATH.split(":")[0] })'];

describe('Node.js 24', () => {
  it('package.json engines, the entry point and scripts/node24.sh require the same major version as the Node.js running the tests', () => {
    const engines = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    assert.equal(engines, `>=${MAJOR} <${MAJOR + 1}`);
    assert.match(readFileSync(join(REPO, 'src/main.ts'), 'utf8'), new RegExp(`^const REQUIRED_NODE_MAJOR = ${MAJOR};$`, 'm'));
    assert.match(readFileSync(BOOTSTRAP, 'utf8'), new RegExp(`^major=${MAJOR}$`, 'm'));
    assert.match(readFileSync(BOOTSTRAP, 'utf8'), new RegExp(`^version=${MAJOR}\\.\\d+\\.\\d+$`, 'm'));
    assert.equal(majorOf(process.version), MAJOR);
  });

  it('the entry point started by another Node.js refuses with one line naming the version needed, before loading the native addons', async (t) => {
    const old = await otherNode();
    if (old === undefined) {
      t.skip(`no Node.js other than ${MAJOR} on this machine`);
      return;
    }
    const result = await run(old.path, [MAIN, '--version']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, `flowcrypt-ekm: needs Node.js ${MAJOR}, but this is Node.js ${old.version.slice(1)}\n`);
  });

  it('scripts/node24.sh runs the command on the cached official Node.js 24 when the machine has an older one, with nodedir at its headers and nothing added to standard output', async () => {
    const oldDir = fakeOldNode();
    const result = await run('bash', [BOOTSTRAP, ...PROBE], { ...process.env, PATH: `${oldDir}${delimiter}${process.env.PATH}` });
    assert.equal(result.code, 0, result.stderr);
    const seen = JSON.parse(result.stdout) as { version: string; execPath: string; nodedir: string; path0: string };
    assert.equal(majorOf(seen.version), MAJOR);
    assert.equal(seen.path0, dirname(seen.execPath), 'Node.js 24 comes first on PATH');
    assert.notEqual(seen.path0, oldDir);
    assert.ok(!seen.execPath.startsWith(`${REPO}/`), `the cache ${seen.execPath} is outside the work tree`);
    const header = readFileSync(join(seen.nodedir, 'include/node/node_version.h'), 'utf8');
    assert.match(header, new RegExp(`#define NODE_MAJOR_VERSION ${MAJOR}\\b`));
    assert.equal(realpathSync(join(seen.nodedir, 'bin/node')), realpathSync(seen.execPath), 'nodedir is the prefix of the Node.js that runs');
  });

  it("scripts/node24.sh uses the machine's own Node.js 24 and installs nothing", async () => {
    const own = tempDir();
    symlinkSync(process.execPath, join(own, 'node'));
    const cache = tempDir();
    const result = await run('bash', [BOOTSTRAP, ...PROBE], { ...process.env, PATH: `${own}${delimiter}${process.env.PATH}`, EKM_NODE_CACHE_DIR: cache });
    assert.equal(result.code, 0, result.stderr);
    const seen = JSON.parse(result.stdout) as { execPath: string; path0: string };
    assert.equal(seen.path0, own);
    assert.equal(seen.execPath, process.execPath);
    assert.deepEqual(readdirSync(cache), []);
  });

  it('scripts/node24.sh refuses a cache inside the work tree', async () => {
    const result = await run('bash', [BOOTSTRAP, 'true'], { ...process.env, PATH: `${fakeOldNode()}${delimiter}${process.env.PATH}`, EKM_NODE_CACHE_DIR: join(REPO, '.cache/node') });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^node24\.sh: the Node\.js cache .*\/\.cache\/node is inside the work tree/);
    assert.ok(!existsSync(join(REPO, '.cache/node')));
  });
});
