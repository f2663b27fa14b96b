/**
 * `npm run bench [-- options]`: the EKM's key fetch measured side by side with its ceilings, as
 * ratios against baselines run alternately in the same session (A B A B ...), which holds on a
 * noisy machine where absolute figures do not. Starts everything on 127.0.0.1, stops what it
 * started, prints a Markdown table and writes the raw figures to bench-results/.
 *
 * Options: --quick (a smoke run of a few minutes), --rounds=N, --duration=S (per run),
 * --warmup=S, --connections=N, --threads=N, --workers=N, --only=id,id (koa, warm-get,
 * new-token-get, public-get, put, health), --sizes=N,N (store sizes to run), --cpu-prof=DIR
 * (the daemon's processes write V8 CPU profiles there), --out=FILE.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { BASELINE_KINDS, type BaselineKind } from './baseline-server.js';
import { STORES_UNDER_TEST, type PreparedStore, type SubjectId } from './bench-stores.js';
import { AUDIENCE, benchUsers, DOMAIN, startIdp, type Idp } from './fixtures.js';
import { freePort } from '../../testbed/processes.js';
import { MAIN, writeProperties } from '../../testbed/ekm-daemon.js';
import { ServerProcess } from './server-process.js';
import { ensureWrk, runWrk, writeRequests, type BenchRequest, type WrkResult } from './wrk.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const BASELINE_SERVER = join(ROOT, 'build/scripts/bench/baseline-server.js');
const RESULTS_DIR = join(ROOT, 'bench-results');
const CACHE_DIR = join(RESULTS_DIR, 'cache');
/** Real users (keys the EKM serves); everyone else in a store is a synthetic record of the same size. */
const REAL_USERS = 16;
/** The daemon's verified-token cache holds this many tokens per worker (src/auth/verified-token-cache.ts). */
const TOKEN_CACHE_ENTRIES = 10_000;

interface Options {
  readonly quick: boolean;
  readonly rounds: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly threads: number;
  readonly workers: number;
  readonly only: ReadonlySet<string> | undefined;
  readonly sizes: ReadonlySet<number> | undefined;
  readonly cpuProfDir: string | undefined;
  readonly out: string | undefined;
}

function parseOptions(argv: readonly string[]): Options {
  const named = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (m === null) throw new Error(`Unexpected argument ${arg}; see the comment at the top of scripts/bench/bench.ts`);
    named.set(m[1]!, m[2] ?? 'true');
  }
  const known = ['quick', 'rounds', 'duration', 'warmup', 'connections', 'threads', 'workers', 'only', 'sizes', 'cpu-prof', 'out'];
  for (const name of named.keys()) if (!known.includes(name)) throw new Error(`Unknown option --${name} (known: ${known.map((k) => `--${k}`).join(', ')})`);
  const quick = named.get('quick') === 'true';
  const integer = (name: string, fallback: number): number => {
    const text = named.get(name);
    if (text === undefined) return fallback;
    if (!/^[1-9]\d*$/.test(text)) throw new Error(`--${name} must be a positive integer, not ${text}`);
    return Number(text);
  };
  const list = (name: string) => named.get(name)?.split(',').map((s) => s.trim()).filter(Boolean);
  const sizes = list('sizes')?.map((s) => {
    if (!/^[1-9]\d*$/.test(s)) throw new Error(`--sizes takes store sizes, not ${s}`);
    return Number(s);
  });
  return {
    quick,
    rounds: integer('rounds', quick ? 1 : 3),
    durationS: integer('duration', quick ? 2 : 10),
    warmupS: integer('warmup', quick ? 1 : 3),
    connections: integer('connections', 64),
    threads: integer('threads', 2),
    workers: integer('workers', availableParallelism()),
    only: list('only') === undefined ? undefined : new Set(list('only')),
    sizes: sizes === undefined ? undefined : new Set(sizes),
    cpuProfDir: named.has('cpu-prof') ? resolve(named.get('cpu-prof')!) : undefined,
    out: named.get('out'),
  };
}

/** wrk's figures plus the server workers' CPU time per request. */
type Measured = WrkResult & { readonly cpuUsPerRequest: number };

/** What one side of a pair is: a server, where to send, and the requests to send. */
interface Target {
  readonly label: string;
  readonly server: ServerProcess;
  readonly url: string;
  readonly requestsFile: string;
}

interface PairResult {
  readonly id: string;
  readonly subject: string;
  readonly baseline: string;
  readonly store: string | undefined;
  readonly users: number | undefined;
  readonly connections: number;
  readonly rounds: { readonly baseline: Measured; readonly subject: Measured; readonly ratio: number }[];
  readonly subjectRssMb: number[];
  readonly baselineRssMb: number[];
  readonly subjectReadyMs: number;
  readonly baselineReadyMs: number;
  /** Warn/error entries the subject logged during the measured rounds. */
  readonly subjectLogProblems: number;
  readonly storeRoundTripMs: number | undefined;
}

const BASELINE_LABELS: Record<BaselineKind, string> = {
  http: 'bare node:http',
  koa: 'Koa, one route',
  'http-verify': 'bare node:http + jose RS256 verify',
};

const SUBJECT_LABELS: Record<SubjectId, string> = {
  'warm-get': 'GET /v1/keys/private, warm token',
  'new-token-get': 'GET /v1/keys/private, new token per request',
  'public-get': 'GET /v1/keys/public/:email',
  put: 'PUT /v1/keys/private (same key again)',
  health: 'GET /health',
};

/** Each subject is compared with the baseline doing the nearest thing with nothing around it. */
const SUBJECT_BASELINE: Record<SubjectId, BaselineKind> = {
  'warm-get': 'http',
  'new-token-get': 'http-verify',
  'public-get': 'http',
  put: 'http',
  health: 'http',
};

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const log = (line: string) => process.stdout.write(`${line}\n`);
  ensureWrk(log);
  const loadBefore = loadavg();
  const startedAt = new Date();
  log(`EKM benchmark: ${options.workers} workers per server, wrk -t${options.threads} -c${options.connections}, ` +
    `${options.rounds} rounds of ${options.durationS} s per side, ${options.quick ? 'quick' : 'full'} mode`);
  log(`Load average before: ${loadBefore.map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} CPUs` +
    (loadBefore[0]! > cpus().length / 4 ? '  (the machine is busy: figures will be noisy; ratios hold better than absolutes)' : ''));

  const runDir = mkdtempSync(join(tmpdir(), 'ekm-bench-'));
  const servers: ServerProcess[] = [];
  let idp: Idp | undefined;
  const cleanup = async () => {
    for (const s of servers.splice(0)) await s.stop().catch(() => undefined);
    await idp?.provider.close().catch(() => undefined);
  };
  const onSignal = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    mkdirSync(CACHE_DIR, { recursive: true });
    const users = await benchUsers(CACHE_DIR, REAL_USERS, log);
    idp = await startIdp(runDir);
    const { minter } = idp;
    const warmTokens = new Map(users.map((u) => [u.email, minter.mint(u.email)]));
    // Each worker caches up to TOKEN_CACHE_ENTRIES tokens, oldest out first: with half again as many
    // per worker, a token has left every cache before the list comes round to it again.
    const tokenPoolSize = Math.ceil(1.5 * options.workers * TOKEN_CACHE_ENTRIES);
    log(`Minting ${tokenPoolSize.toLocaleString('en')} ID tokens for the new-token-per-request runs`);
    const newTokens: BenchRequest[] = [];
    for (let i = 0; i < tokenPoolSize; i++) {
      const user = users[i % users.length]!;
      newTokens.push({ method: 'GET', path: '/v1/keys/private', token: minter.mint(user.email) });
    }
    const files = {
      warmGet: writeRequests(runDir, 'warm-get', users.map((u) => ({ method: 'GET', path: '/v1/keys/private', token: warmTokens.get(u.email) }))),
      newToken: writeRequests(runDir, 'new-token-get', newTokens),
      publicGet: writeRequests(runDir, 'public-get', users.map((u) => ({ method: 'GET', path: `/v1/keys/public/${u.email}` }))),
      put: writeRequests(runDir, 'put', users.map((u) => ({ method: 'PUT', path: '/v1/keys/private', token: warmTokens.get(u.email), body: JSON.stringify({ privateKey: u.privateKey }) }))),
      health: writeRequests(runDir, 'health', [{ method: 'GET', path: '/health' }]),
    };
    const subjectFiles: Record<SubjectId, string> = {
      'warm-get': files.warmGet,
      'new-token-get': files.newToken,
      'public-get': files.publicGet,
      put: files.put,
      health: files.health,
    };
    const offsets = new Map<string, number>();
    const wanted = (id: string) => options.only === undefined || options.only.has(id);

    const measure = async (target: Target, durationS: number, connections: number): Promise<Measured> => {
      const offset = offsets.get(target.requestsFile) ?? 0;
      const cpuBefore = target.server.cpuMs();
      const measured = await runWrk(runDir, {
        url: target.url,
        requestsFile: target.requestsFile,
        durationS,
        connections,
        threads: Math.min(options.threads, connections),
        offset,
      });
      // CPU per request holds up on a busy machine better than req/s: it is what profiling reduces.
      const result = { ...measured, cpuUsPerRequest: ((target.server.cpuMs() - cpuBefore) * 1000) / Math.max(1, measured.requests) };
      offsets.set(target.requestsFile, offset + result.requests);
      return result;
    };

    /** Warm-up of both, then baseline and subject alternately, `rounds` times each. */
    const measurePair = async (id: string, subject: Target, baseline: Target, extra: { store?: string; users?: number; connections?: number }): Promise<PairResult> => {
      const connections = extra.connections ?? options.connections;
      log(`\n${subject.label}${extra.users === undefined ? '' : ` (${extra.store}, ${extra.users.toLocaleString('en')} users)`} vs ${baseline.label}, ${connections} connections`);
      await measure(baseline, options.warmupS, connections);
      await measure(subject, options.warmupS, connections);
      subject.server.takeLog(/./);
      const rounds: PairResult['rounds'] = [];
      for (let i = 0; i < options.rounds; i++) {
        const b = await measure(baseline, options.durationS, connections);
        const s = await measure(subject, options.durationS, connections);
        rounds.push({ baseline: b, subject: s, ratio: s.rps / b.rps });
        log(`  round ${i + 1}: baseline ${fmtRps(b.rps)} req/s p99 ${b.p99Ms.toFixed(1)} ms ${b.cpuUsPerRequest.toFixed(0)} µs CPU/req` +
          ` | subject ${fmtRps(s.rps)} req/s p99 ${s.p99Ms.toFixed(1)} ms ${s.cpuUsPerRequest.toFixed(0)} µs CPU/req` +
          `${s.errors > 0 ? ` errors ${s.errors}` : ''} | ratio ${(s.rps / b.rps).toFixed(3)}`);
      }
      const problems = subject.server.takeLog(/"level":"(warn|error)"/);
      if (problems.length > 0) log(`  the subject logged ${problems.length} warn/error entries, e.g. ${problems[0]!.slice(0, 300)}`);
      return {
        id,
        subject: subject.label,
        baseline: baseline.label,
        store: extra.store,
        users: extra.users,
        connections,
        rounds,
        subjectRssMb: subject.server.workerRssMb(),
        baselineRssMb: baseline.server.workerRssMb(),
        subjectReadyMs: subject.server.readyMs,
        baselineReadyMs: baseline.server.readyMs,
        subjectLogProblems: problems.length,
        storeRoundTripMs: undefined,
      };
    };

    // The body every baseline answers: the EKM's own answer to the benchmarked private-key GET.
    const bodyFile = join(runDir, 'body.json');
    writeFileSync(bodyFile, JSON.stringify({ privateKeys: [{ decryptedPrivateKey: users[0]!.privateKey }] }));
    const bodyBytes = readFileSync(bodyFile).length;
    log(`Baseline body: ${bodyBytes} bytes of JSON (the EKM's answer for one RSA-3072 key)`);

    const baselines = new Map<BaselineKind, Target>();
    for (const kind of BASELINE_KINDS) {
      const port = await freePort();
      const server = await ServerProcess.start({
        name: BASELINE_LABELS[kind],
        args: [BASELINE_SERVER, `--kind=${kind}`, `--port=${port}`, `--workers=${options.workers}`, `--body=${bodyFile}`,
          ...(kind === 'http-verify' ? [`--jwks=${idp.jwksFile}`, `--issuer=${idp.provider.issuer}`, `--audience=${AUDIENCE}`] : [])],
        logFile: join(runDir, `baseline-${kind}.log`),
        readyUrl: `http://127.0.0.1:${port}/v1/keys/private`,
        readyHeaders: { authorization: `Bearer ${warmTokens.get(users[0]!.email)}` },
        workers: options.workers,
      });
      servers.push(server);
      const requestsFile = kind === 'http-verify' ? files.newToken : files.warmGet;
      baselines.set(kind, { label: BASELINE_LABELS[kind], server, url: `http://127.0.0.1:${port}`, requestsFile });
    }
    const bare = baselines.get('http')!;

    const pairs: PairResult[] = [];
    if (wanted('koa')) pairs.push(await measurePair('koa', baselines.get('koa')!, bare, {}));

    for (const store of STORES_UNDER_TEST) {
      for (const run of store.runs(options.quick)) {
        if (options.sizes !== undefined && !options.sizes.has(run.users)) continue;
        const subjects = run.subjects.filter(wanted);
        if (subjects.length === 0) continue;
        const prepared = await store.prepare({ cacheDir: CACHE_DIR, users, log }, run.users);
        try {
          const daemon = await startDaemon(runDir, options, idp, prepared, store.name, run.users, warmTokens.get(users[0]!.email)!);
          servers.push(daemon);
          log(`\nEKM on ${store.name} with ${run.users.toLocaleString('en')} users: first 200 after ${daemon.readyMs.toFixed(0)} ms`);
          const runPairs: PairResult[] = [];
          try {
            for (const subject of subjects) {
              const target: Target = { label: SUBJECT_LABELS[subject], server: daemon, url: daemon.url, requestsFile: subjectFiles[subject] };
              runPairs.push(await measurePair(subject, target, baselines.get(SUBJECT_BASELINE[subject])!, { store: store.name, users: run.users, connections: run.connections }));
            }
          } finally {
            servers.splice(servers.indexOf(daemon), 1);
            await daemon.stop();
          }
          // The store's own round trip, measured from this process once the daemon is gone.
          const storeRoundTripMs = await prepared.roundTripMs(users[0]!);
          pairs.push(...runPairs.map((p) => ({ ...p, storeRoundTripMs })));
        } finally {
          await prepared.release();
        }
      }
    }
    await cleanup();

    const loadAfter = loadavg();
    const targets = evaluateTargets(pairs);
    const report = renderReport(pairs, targets, options, bodyBytes);
    log(`\n${report}`);
    log(`Load average after: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
    const results = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      machine: machine(loadBefore, loadAfter),
      options: { ...options, only: options.only && [...options.only], sizes: options.sizes && [...options.sizes] },
      bodyBytes,
      tokenPoolSize,
      pairs,
      targets,
      report,
    };
    mkdirSync(RESULTS_DIR, { recursive: true });
    const out = options.out ?? join(RESULTS_DIR, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
    copyFileSync(out, join(RESULTS_DIR, 'latest.json'));
    log(`Raw figures: ${out} (and bench-results/latest.json)`);
    // It holds ID tokens and the cached stores' passphrases; after a failure it is kept for its logs.
    rmSync(runDir, { recursive: true, force: true });
  } catch (e) {
    log(`The run's files, among them the servers' output, are in ${runDir}`);
    throw e;
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

type Daemon = ServerProcess & { readonly url: string };

async function startDaemon(runDir: string, options: Options, idp: Idp, store: PreparedStore, storeName: string, users: number, token: string): Promise<Daemon> {
  const port = await freePort();
  const dir = join(runDir, `ekm-${storeName}-${users}`);
  mkdirSync(dir, { recursive: true });
  const properties: Record<string, string> = {
    'org.id': DOMAIN,
    'org.domains': DOMAIN,
    'api.hostname': '127.0.0.1',
    'api.port': String(port),
    'api.workers': String(options.workers),
    // Plain HTTP, as behind the TLS-terminating proxy the reference config describes.
    'api.https.enabled': 'false',
    'api.cors.origins': 'chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc,moz-extension://39553fca-76d4-4791-bf00-b4dfede6fd45',
    ...store.properties,
    'logger.types': 'StdoutLogger',
    'logger.default.level': 'info',
    'auth.type': 'OpenIDConnectAuthenticator',
    'auth.openid.issuer': idp.provider.issuer,
    'auth.openid.jwks': idp.provider.jwksUri,
    'auth.openid.audience': AUDIENCE,
    'acl.type': 'SimpleAcl',
  };
  const configFile = writeProperties(dir, properties);
  // Node refuses --cpu-prof in NODE_OPTIONS; on the command line it reaches the workers too,
  // since cluster.fork() passes the primary's execArgv on.
  const profile = options.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`];
  if (options.cpuProfDir !== undefined) mkdirSync(options.cpuProfDir, { recursive: true });
  const server = await ServerProcess.start({
    name: `EKM (${storeName}, ${users} users)`,
    args: [...profile, MAIN, `--config=${configFile}`],
    env: { NODE_EXTRA_CA_CERTS: idp.caFile },
    logFile: join(dir, 'output.log'),
    readyUrl: `http://127.0.0.1:${port}/v1/keys/private`,
    readyHeaders: { authorization: `Bearer ${token}` },
    workers: options.workers,
    allReadyLine: /EKM listening on/,
  });
  return Object.assign(server, { url: `http://127.0.0.1:${port}` });
}

interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean | undefined;
  readonly value: number | undefined;
}

function evaluateTargets(pairs: readonly PairResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const embedded = (p: PairResult) => p.store === 'EncryptedDbStore';
  const find = (id: string, users?: number) => pairs.find((p) => p.id === id && (users === undefined || p.users === users) && (p.store === undefined || embedded(p)));
  const mainSize = pairs.find((p) => p.id === 'warm-get' && embedded(p) && p.users === 10_000)?.users ?? pairs.find((p) => p.id === 'warm-get' && embedded(p))?.users;
  const warm = mainSize === undefined ? undefined : find('warm-get', mainSize);
  const koa = find('koa');
  if (koa) checks.push(check('Koa, one route: 0.56-0.63 of bare node:http (measured before; a reference)', ratioOf(koa), undefined));
  if (warm) {
    checks.push(check(`Warm-token GET, ${mainSize!.toLocaleString('en')} users: >= 0.50 of bare node:http`, ratioOf(warm), (r) => r >= 0.5));
    const p99 = median(warm.rounds.map((r) => r.subject.p99Ms)) / median(warm.rounds.map((r) => r.baseline.p99Ms));
    checks.push(check('Warm-token GET: p99 <= 2x the bare baseline p99', p99, (r) => r <= 2, 'x'));
    if (koa) checks.push(check('Warm-token GET against Koa\'s own ceiling (Koa ratio)', ratioOf(warm) / ratioOf(koa), undefined));
  }
  const fresh = find('new-token-get');
  if (fresh) checks.push(check('New-token GET: >= 0.85 of bare node:http doing the same RS256 verification', ratioOf(fresh), (r) => r >= 0.85));
  const small = find('warm-get', 100);
  const large = find('warm-get', 100_000);
  if (small && large) checks.push(check('Warm-token GET, 100,000 users: >= 0.9 of the 100-user figure (ratios to bare node:http)', ratioOf(large) / ratioOf(small), (r) => r >= 0.9));
  for (const p of pairs.filter((p) => p.store !== undefined && !embedded(p) && p.storeRoundTripMs !== undefined)) {
    // One request at a time, the store alone could answer 1000 / round trip lookups per second.
    const serial = 1000 / p.storeRoundTripMs!;
    checks.push(check(`${p.store}: warm-token GET req/s against one-at-a-time store round trips (${serial.toFixed(0)}/s)`, median(p.rounds.map((r) => r.subject.rps)) / serial, undefined));
  }
  // The embedded store's rows: a KMIP or HSM row's start and memory include its server's part.
  const daemonPairs = pairs.filter(embedded);
  if (daemonPairs.length > 0) {
    const rss = Math.max(...daemonPairs.flatMap((p) => p.subjectRssMb));
    checks.push(check('RSS <= 120 MB per worker after the runs (EncryptedDbStore, largest seen)', rss, (v) => v <= 120, ' MB'));
    const ready = Math.max(...daemonPairs.map((p) => p.subjectReadyMs));
    checks.push(check('Ready (first 200 of an authenticated GET, EncryptedDbStore) <= 1.5 s after start (slowest start)', ready, (v) => v <= 1500, ' ms'));
  }
  return checks;
}

function check(target: string, value: number, pass: ((v: number) => boolean) | undefined, unit = ''): TargetCheck {
  const measured = unit === ' MB' || unit === ' ms' ? `${value.toFixed(0)}${unit}` : `${value.toFixed(2)}${unit}`;
  return { target, measured, met: pass?.(value), value };
}

function ratioOf(pair: PairResult): number {
  return median(pair.rounds.map((r) => r.ratio));
}

function renderReport(pairs: readonly PairResult[], targets: readonly TargetCheck[], options: Options, bodyBytes: number): string {
  const lines: string[] = [];
  lines.push('| Subject | Store, users | req/s | Baseline | Baseline req/s | Ratio | p50 ms | p99 ms | Baseline p99 ms | CPU µs/req (baseline) | Errors | RSS MB/worker | Ready ms |');
  lines.push('| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const p of pairs) {
    const s = p.rounds.map((r) => r.subject);
    const b = p.rounds.map((r) => r.baseline);
    lines.push([
      p.subject,
      p.users === undefined ? '-' : `${p.store}, ${p.users.toLocaleString('en')}${p.storeRoundTripMs === undefined ? '' : ` (store round trip ${fmtMs(p.storeRoundTripMs)})`}` +
        (p.connections === options.connections ? '' : `, ${p.connections} connections`),
      fmtRps(median(s.map((r) => r.rps))),
      p.baseline,
      fmtRps(median(b.map((r) => r.rps))),
      median(p.rounds.map((r) => r.ratio)).toFixed(2),
      median(s.map((r) => r.p50Ms)).toFixed(2),
      median(s.map((r) => r.p99Ms)).toFixed(2),
      median(b.map((r) => r.p99Ms)).toFixed(2),
      `${median(s.map((r) => r.cpuUsPerRequest)).toFixed(0)} (${median(b.map((r) => r.cpuUsPerRequest)).toFixed(0)})`,
      String(s.reduce((n, r) => n + r.errors, 0) + p.subjectLogProblems),
      p.subjectRssMb.map((m) => m.toFixed(0)).join(' / '),
      p.subjectReadyMs.toFixed(0),
    ].join(' | ').replace(/^/, '| ').replace(/$/, ' |'));
  }
  const baselineSeen = new Map<string, PairResult>();
  for (const p of pairs) if (!baselineSeen.has(p.baseline)) baselineSeen.set(p.baseline, p);
  lines.push('');
  lines.push('| Baseline | RSS MB/worker | Ready ms |');
  lines.push('| --- | ---: | ---: |');
  for (const [label, p] of baselineSeen) lines.push(`| ${label} | ${p.baselineRssMb.map((m) => m.toFixed(0)).join(' / ')} | ${p.baselineReadyMs.toFixed(0)} |`);
  lines.push('');
  lines.push('| Target | Measured | Met |');
  lines.push('| --- | ---: | --- |');
  for (const t of targets) lines.push(`| ${t.target} | ${t.measured} | ${t.met === undefined ? '(reference)' : t.met ? 'yes' : '**no**'} |`);
  lines.push('');
  lines.push(`Ratio: median over ${options.rounds} round(s) of subject req/s / baseline req/s, each pair run back to back (baseline first), ` +
    `${options.durationS} s per run after a ${options.warmupS} s warm-up of each; req/s, p50 and p99 are medians over the rounds. ` +
    `wrk -t${options.threads} -c${options.connections}; ${options.workers} workers per server; every baseline answers the same ${bodyBytes}-byte JSON body. ` +
    'CPU µs/req: user+system time of the server\'s processes (primary and workers) per request (from /proc), which a busy machine disturbs less than req/s. ' +
    'Errors: socket errors, non-2xx answers and warn/error log entries of the subject. RSS after the pair\'s runs.');
  return lines.join('\n');
}

function machine(loadBefore: number[], loadAfter: number[]) {
  let wrkVersion = 'unknown';
  try {
    wrkVersion = execFileSync('wrk', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!;
  } catch (e) {
    // wrk --version exits 1 after printing its version
    const firstLine = ((e as { stdout?: string }).stdout ?? '').split('\n')[0];
    if (firstLine) wrkVersion = firstLine;
  }
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    wrk: wrkVersion.trim(),
    loadBefore,
    loadAfter,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmtMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(1)} ms`;
}

function fmtRps(rps: number): string {
  return Math.round(rps).toLocaleString('en');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Partial<Error> | null | undefined)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
