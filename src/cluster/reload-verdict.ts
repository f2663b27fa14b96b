import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * How a reload ended, as the primary tells `flowcrypt-ekm --reload` (the unit's ExecReload), which
 * signalled it and waits: systemd 252 has no Type=notify-reload, so the verdict travels through a
 * file in the unit's RuntimeDirectory (/run/flowcrypt-ekm, systemd's $RUNTIME_DIRECTORY), which
 * only the service user can write.
 */
export interface ReloadVerdict {
  /** The primary that reloaded. */
  readonly pid: number;
  /** When the primary received the latest SIGHUP this reload covers (ms since the epoch). */
  readonly signalledAt: number;
  /** The exit status for the reload command: 0 done, 78 refused (configuration), 1 failed. */
  readonly status: number;
  /** One line for the operator: what changed and what waits for a restart, or why it was refused. */
  readonly message: string;
}

const FILE_NAME = 'reload-verdict.json';

/** The folder verdicts go to: systemd's RuntimeDirectory; undefined outside systemd (SIGHUP still reloads). */
export function verdictDirectory(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.RUNTIME_DIRECTORY?.split(':')[0] || undefined;
}

/** Replaces the verdict file in one step (write, then rename), so a reader never sees half of it. */
export function writeVerdict(dir: string, verdict: ReloadVerdict): void {
  const file = join(dir, FILE_NAME);
  writeFileSync(`${file}.${process.pid}.tmp`, JSON.stringify(verdict), { mode: 0o600 });
  renameSync(`${file}.${process.pid}.tmp`, file);
}

/** The verdict of `pid`'s latest reload if it covers a signal sent at or after `since`. */
export function readVerdict(dir: string, pid: number, since: number): ReloadVerdict | undefined {
  let verdict: ReloadVerdict;
  try {
    verdict = JSON.parse(readFileSync(join(dir, FILE_NAME), 'utf8')) as ReloadVerdict;
  } catch {
    return undefined;
  }
  return verdict.pid === pid && verdict.signalledAt >= since ? verdict : undefined;
}
