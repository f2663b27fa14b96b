import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from './http-client.js';
import { childPids, freePort } from './processes.js';

/** build/src/main.js, the real `flowcrypt-ekm` entry point. */
export const MAIN = resolve(import.meta.dirname, '../src/main.js');

/** Properties as the text of a .properties file (what the daemon and parseConfig read). */
export function propertiesText(properties: Readonly<Record<string, string>>): string {
  return (
    Object.entries(properties)
      .map(([name, value]) => `${name}=${value}`)
      .join('\n') + '\n'
  );
}

/** The properties of an EKM that trusts this OpenID provider's tokens for `audience`, with SimpleAcl. */
export function openIdProperties(idp: { readonly issuer: string; readonly jwksUri: string }, audience: string): Record<string, string> {
  return {
    'auth.type': 'OpenIDConnectAuthenticator',
    'auth.openid.issuer': idp.issuer,
    'auth.openid.jwks': idp.jwksUri,
    'auth.openid.audience': audience,
    'acl.type': 'SimpleAcl',
  };
}

/** Writes a .properties file from a record, returning its path. */
export function writeProperties(dir: string, properties: Readonly<Record<string, string>>, name = 'flowcrypt-email-key-manager.properties'): string {
  const file = join(dir, name);
  writeFileSync(file, propertiesText(properties), { mode: 0o600 });
  return file;
}

/** Runs `flowcrypt-ekm` with arguments to completion, capturing its output (both streams in order, and each alone). */
export async function runEkm(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; output: string; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
    stderr += d.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output, stdout, stderr };
}

/**
 * The real daemon (primary plus workers) started from build/src/main.js with a config written to
 * a temp dir; waits until `/` answers. Collects everything it prints.
 */
export class EkmDaemon {
  output = '';
  private constructor(
    readonly process: ChildProcess,
    readonly baseUrl: string,
    readonly configFile: string,
  ) {
    process.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    process.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  static async start(options: {
    properties: Readonly<Record<string, string>>;
    env?: NodeJS.ProcessEnv;
    dir?: string;
    /** https when the properties enable it. */
    scheme?: 'http' | 'https';
    /** The CA that signed the daemon's HTTPS certificate. */
    ca?: string;
    /** How long `/` may take to answer (30 s by default). */
    startTimeoutMs?: number;
  }): Promise<EkmDaemon> {
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'ekm-daemon-'));
    const port = options.properties['api.port'] ?? String(await freePort());
    const configFile = writeProperties(dir, { 'api.hostname': '127.0.0.1', ...options.properties, 'api.port': port });
    const child = spawn(process.execPath, [MAIN, `--config=${configFile}`], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const daemon = new EkmDaemon(child, `${options.scheme ?? 'http'}://127.0.0.1:${port}`, configFile);
    try {
      await daemon.waitUntilServing(options.ca, options.startTimeoutMs);
    } catch (e) {
      await daemon.stop('SIGKILL');
      throw e;
    }
    return daemon;
  }

  /** Resolves once `/` answers 200; rejects if the process exits first. */
  async waitUntilServing(ca?: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`EKM exited (${this.process.exitCode ?? this.process.signalCode}) before serving:\n${this.output}`);
      }
      try {
        if ((await request(`${this.baseUrl}/`, { ca, timeoutMs: 2000 })).status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`EKM did not start within ${timeoutMs} ms:\n${this.output}`);
  }

  /** PIDs of the worker processes (children of the primary). */
  workerPids(): number[] {
    return childPids(this.process.pid!);
  }

  /** Sends a signal to the primary and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) {
      return { code: this.process.exitCode, signal: this.process.signalCode };
    }
    const exited = once(this.process, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    this.process.kill(signal);
    const [code, sig] = await exited;
    return { code, signal: sig };
  }
}
