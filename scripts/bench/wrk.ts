/**
 * Runs wrk (the load generator chosen because it is lighter than autocannon, which took most of a
 * core here) with a Lua script that replays a file of pre-built requests, one per line, so every
 * request can carry its own token and body. The script prints its figures as one JSON line.
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** One request a run sends; a run cycles through its list. */
export interface BenchRequest {
  readonly method: 'GET' | 'PUT';
  readonly path: string;
  /** An ID token, sent as `Authorization: Bearer`. */
  readonly token?: string | undefined;
  /** A JSON body (sent with Content-Type: application/json). */
  readonly body?: string | undefined;
}

export interface WrkResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Socket errors and timeouts plus answers other than 2xx/3xx. */
  readonly errors: number;
  readonly non2xx: number;
}

export interface WrkOptions {
  readonly url: string;
  readonly requestsFile: string;
  readonly durationS: number;
  readonly connections: number;
  readonly threads: number;
  /** Where in the request list this run starts (so consecutive runs do not repeat requests). */
  readonly offset: number;
}

const LUA = String.raw`
-- Written by scripts/bench/wrk.ts. Replays pre-built requests: one per line of the file named by
-- the first script argument, as method TAB path TAB token TAB body (token and body may be empty).
local threads_started = 0
function setup(thread)
  thread:set("thread_index", threads_started)
  threads_started = threads_started + 1
end

local requests = {}
local count = 0
local position = 0
local stride = 1

function init(args)
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    if body == "" then body = nil else headers["Content-Type"] = "application/json" end
    count = count + 1
    requests[count] = wrk.format(method, path, headers, body)
  end
  stride = tonumber(args[3])
  position = tonumber(args[2]) + thread_index
end

function request()
  local r = requests[(position % count) + 1]
  position = position + stride
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
`;

/** Writes the Lua script and a request list into `dir`; returns the list's path. */
export function writeRequests(dir: string, name: string, requests: readonly BenchRequest[]): string {
  if (requests.length === 0) throw new TypeError('A run needs at least one request');
  writeFileSync(join(dir, 'replay.lua'), LUA);
  const file = join(dir, `${name}.requests`);
  const lines = requests.map((r) => {
    const fields = [r.method, r.path, r.token ?? '', r.body ?? ''];
    if (fields.some((f) => /[\t\n]/.test(f))) throw new TypeError(`A request of ${name} has a tab or newline in a field`);
    return fields.join('\t');
  });
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** Runs wrk once; rejects if it fails or prints no figures. Bounded by its own -d plus a margin. */
export async function runWrk(dir: string, options: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.durationS}s`,
    '--timeout', '10s',
    '-s', join(dir, 'replay.lua'),
    options.url,
    '--', options.requestsFile, String(options.offset), String(options.threads),
  ];
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), (options.durationS + 60) * 1000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(killer);
  const line = /^WRK_JSON (.*)$/m.exec(output)?.[1];
  if (code !== 0 || line === undefined) throw new Error(`wrk failed (exit ${code}):\n${output}`);
  const raw = JSON.parse(line) as Record<string, number>;
  const n = (name: string): number => raw[name] ?? 0;
  const durationS = n('durationUs') / 1e6;
  const socketErrors = n('connect') + n('read') + n('write') + n('timeout');
  return {
    requests: n('requests'),
    durationS,
    rps: n('requests') / durationS,
    p50Ms: n('p50Us') / 1000,
    p99Ms: n('p99Us') / 1000,
    maxMs: n('maxUs') / 1000,
    errors: socketErrors + n('status'),
    non2xx: n('status'),
  };
}

/**
 * Makes sure wrk is on the PATH: installs the Debian package when running as root with apt-get,
 * otherwise throws saying how to install it.
 */
export function ensureWrk(log: (line: string) => void): void {
  if (hasWrk()) return;
  const how = 'Install it with: sudo apt-get install wrk (Debian/Ubuntu package "wrk")';
  if (process.getuid?.() !== 0 || !commandExists('apt-get')) throw new Error(`wrk is not installed. ${how}`);
  log('wrk is not installed; installing the Debian package wrk with apt-get');
  const install = () => execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'wrk'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  try {
    install();
  } catch {
    // The package lists may be missing or stale on a fresh machine.
    execFileSync('apt-get', ['update'], { stdio: 'inherit' });
    install();
  }
  if (!hasWrk()) throw new Error(`wrk is still not available after apt-get. ${how}`);
}

function hasWrk(): boolean {
  return commandExists('wrk');
}

function commandExists(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
