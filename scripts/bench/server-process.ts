/**
 * A server under test (the EKM daemon or a baseline), started as its own process tree with its
 * output appended to a file (as journald would receive it; held in memory it would cost the
 * benchmark process CPU and grow without bound). Knows its primary's PID and its workers' PIDs and
 * stops only those.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, truncateSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from '../../testbed/http-client.js';
import { childPids, isAlive } from '../../testbed/processes.js';

export interface ServerStart {
  /** Shown in messages. */
  readonly name: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly logFile: string;
  /** Polled until it answers 200: its time is the "ready" figure. */
  readonly readyUrl: string;
  readonly readyHeaders?: Record<string, string>;
  /** Worker processes to wait for after the first 200. */
  readonly workers: number;
  /** A line the server prints once every worker serves, waited for after the first 200. */
  readonly allReadyLine?: RegExp;
  readonly timeoutMs?: number;
}

/** USER_HZ: 100 on every Linux architecture Node supports. */
const CLOCK_TICKS_PER_S = 100;

export class ServerProcess {
  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly logFile: string,
    /** Milliseconds from spawn to the first 200 of `readyUrl`. */
    readonly readyMs: number,
  ) {}

  static async start(options: ServerStart): Promise<ServerProcess> {
    const fd = openSync(options.logFile, 'a');
    const started = performance.now();
    const child = spawn(process.execPath, options.args, { env: { ...process.env, ...options.env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    try {
      return await ServerProcess.waitUntilReady(options, child, started);
    } catch (e) {
      // A server that did not come up must not outlive the run: stop its whole tree.
      for (const pid of childPids(child.pid!)) tryKill(pid);
      child.kill('SIGKILL');
      throw e;
    }
  }

  private static async waitUntilReady(options: ServerStart, child: ChildProcess, started: number): Promise<ServerProcess> {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    let readyMs: number | undefined;
    while (readyMs === undefined) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${options.name} exited (${child.exitCode ?? child.signalCode}) before answering; its output is in ${options.logFile}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`${options.name} did not answer 200 at ${options.readyUrl} in time; its output is in ${options.logFile}`);
      }
      const answer = await request(options.readyUrl, { headers: options.readyHeaders, timeoutMs: 2000 }).catch(() => undefined);
      if (answer?.status === 200) readyMs = performance.now() - started;
      else await sleep(5);
    }
    const server = new ServerProcess(options.name, child, options.logFile, readyMs);
    while (server.workerPids().length < options.workers) {
      if (Date.now() > deadline) throw new Error(`${options.name} did not start ${options.workers} workers in time`);
      await sleep(20);
    }
    while (options.allReadyLine !== undefined && !options.allReadyLine.test(readFileSync(options.logFile, 'utf8'))) {
      if (Date.now() > deadline) throw new Error(`${options.name} did not print ${options.allReadyLine} in time; its output is in ${options.logFile}`);
      await sleep(20);
    }
    return server;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The primary's children. */
  workerPids(): number[] {
    return childPids(this.pid);
  }

  /** Resident set size of each worker, in MB. */
  workerRssMb(): number[] {
    return this.workerPids().map((pid) => {
      try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m === null ? NaN : Number(m[1]) / 1024;
      } catch {
        return NaN;
      }
    });
  }

  /**
   * CPU time (user + system) the primary and its workers have used so far, in ms (the kernel counts
   * in ticks of 10 ms). The primary counts: Pkcs11Store's token session lives there.
   */
  cpuMs(): number {
    return [this.pid, ...this.workerPids()].reduce((sum, pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        // Fields 14 and 15 of /proc/PID/stat (utime, stime), counted from after the command name.
        return sum + ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
      } catch {
        return sum;
      }
    }, 0);
  }

  /** Lines of the output so far that match `pattern`; then empties the file (it is opened for append). */
  takeLog(pattern: RegExp): string[] {
    const lines = readFileSync(this.logFile, 'utf8').split('\n').filter((l) => pattern.test(l));
    truncateSync(this.logFile, 0);
    return lines;
  }

  /** SIGTERM to the primary (which drains and stops its workers); SIGKILL to the tree after `graceMs`. */
  async stop(graceMs = 30_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const workers = this.workerPids();
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      workers.forEach(tryKill);
      this.child.kill('SIGKILL');
    }, graceMs);
    await exited;
    clearTimeout(timer);
    // Workers outlive their primary by a moment when they are writing a CPU profile.
    const until = Date.now() + graceMs;
    while (workers.some(isAlive) && Date.now() < until) await sleep(50);
  }
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

