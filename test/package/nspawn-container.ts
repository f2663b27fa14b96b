import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a host command to completion; never throws for a non-zero exit. */
export function run(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { env: options.env ?? process.env, cwd: options.cwd, timeout: options.timeoutMs ?? 600_000, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr: error !== null && typeof error.code !== 'number' ? `${stderr}${error.message}` : stderr });
    });
  });
}

/**
 * A throwaway copy of a root file system booted with systemd-nspawn (systemd as PID 1, the host's
 * network), for installing a package into a real system. Commands run inside with nsenter.
 *
 * Only what this object started is ever stopped: the nspawn process by its PID.
 */
export class NspawnContainer {
  private log = '';

  private constructor(
    /** The container's root, a plain folder on the host: files can be read and written through it. */
    readonly root: string,
    private readonly nspawn: ChildProcess,
    /** The container's PID 1, as the host sees it. */
    readonly pid1: number,
  ) {
    nspawn.stdout?.on('data', (d: Buffer) => (this.log += d.toString()));
    nspawn.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
  }

  /** Extracts `tarball` into a new folder under `parent` and boots it; resolves once systemd has finished starting up. */
  static async boot(tarball: string, parent: string): Promise<NspawnContainer> {
    const dir = mkdtempSync(join(parent, 'ekm-package-test-'));
    const root = join(dir, 'root');
    mkdirSync(root);
    const extracted = await run('tar', ['-C', root, '--numeric-owner', '--xattrs', '-xf', tarball]);
    if (extracted.code !== 0) throw new Error(`extracting ${tarball}: ${extracted.stderr}`);
    // --register=no and --keep-unit: there is no system bus (nor machined) on the host to register
    // with. No --private-network: the test's identity provider listens on the host's 127.0.0.1.
    const nspawn = spawn('systemd-nspawn', ['-D', root, '-b', '--register=no', '--keep-unit', `--machine=ekm-test-${process.pid}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let early = '';
    nspawn.stderr.on('data', (d: Buffer) => (early += d.toString()));
    const deadline = Date.now() + 30_000;
    let pid1: number | undefined;
    while (pid1 === undefined) {
      if (nspawn.exitCode !== null || Date.now() > deadline) {
        nspawn.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`systemd-nspawn did not start a container (exit ${nspawn.exitCode}): ${early}`);
      }
      pid1 = findContainerInit(nspawn.pid!);
      if (pid1 === undefined) await sleep(50);
    }
    const container = new NspawnContainer(root, nspawn, pid1);
    // Until systemd runs there and its bus is up, systemctl answers "offline" or cannot connect.
    const booting = Date.now() + 90_000;
    let booted = await container.exec(['timeout', '60', 'systemctl', 'is-system-running', '--wait']);
    while (!['running', 'degraded'].includes(booted.stdout.trim()) && Date.now() < booting) {
      await sleep(200);
      booted = await container.exec(['timeout', '60', 'systemctl', 'is-system-running', '--wait']);
    }
    // "degraded" (a unit of the minimal system failed) still lets the test run; it says which.
    if (!['running', 'degraded'].includes(booted.stdout.trim())) {
      const log = container.log;
      await container.destroy();
      throw new Error(`the container did not boot: ${booted.stdout}${booted.stderr}\n${log.slice(-4000)}`);
    }
    return container;
  }

  /** Runs a command inside the container (all its namespaces), with a clean environment. */
  exec(argv: readonly string[], options: { timeoutMs?: number; env?: Readonly<Record<string, string>> } = {}): Promise<RunResult> {
    const env = Object.entries({ PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...options.env }).map(([k, v]) => `${k}=${v}`);
    return run('nsenter', ['-t', String(this.pid1), '-a', 'env', '-i', ...env, ...argv], { timeoutMs: options.timeoutMs });
  }

  /** A shell script inside the container; throws with its output unless it exits 0. */
  async sh(script: string, options: { timeoutMs?: number; env?: Readonly<Record<string, string>> } = {}): Promise<string> {
    const result = await this.exec(['sh', '-ec', script], options);
    if (result.code !== 0) {
      throw new Error(`in the container, exit ${result.code}: ${script}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
    }
    return result.stdout;
  }

  /** The path on the host of a path inside the container. */
  path(inside: string): string {
    return join(this.root, inside);
  }

  /** Powers the container off (SIGTERM to nspawn asks its systemd to shut down), then deletes its files. */
  async destroy(): Promise<void> {
    if (this.nspawn.exitCode === null && this.nspawn.signalCode === null) {
      const exited = once(this.nspawn, 'exit');
      this.nspawn.kill('SIGTERM');
      const timer = sleep(30_000).then(() => 'timeout');
      if ((await Promise.race([exited, timer])) === 'timeout') {
        this.nspawn.kill('SIGKILL');
        await exited;
      }
    }
    rmSync(join(this.root, '..'), { recursive: true, force: true });
  }
}

/** The descendant of `nspawnPid` that is PID 1 in its own PID namespace. */
function findContainerInit(nspawnPid: number): number | undefined {
  const queue = [nspawnPid];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    let children: number[] = [];
    try {
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        children.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
      }
    } catch {
      children = [];
    }
    for (const child of children) {
      try {
        const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${child}/status`, 'utf8'))?.[1]?.split(/\s+/);
        if (nspid !== undefined && nspid.length > 1 && nspid[nspid.length - 1] === '1') return child;
      } catch {
        // The process exited meanwhile.
      }
      queue.push(child);
    }
  }
  return undefined;
}
