import { EkmError } from '../errors.js';

/** Where a command writes: its report on `out`; warnings and the progress display on `err`. */
export interface CommandOutput {
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream & { isTTY?: boolean };
}

export const PROCESS_OUTPUT: CommandOutput = { out: process.stdout, err: process.stderr };

/**
 * A store outage or an I/O failure, in one line for the operator; undefined for anything else (a
 * bug, a ConfigError), which the command rethrows.
 */
export function describeFailure(e: unknown): string | undefined {
  if (e instanceof EkmError) return `${e.message}${e.details ? ` (${e.details})` : ''}`;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) ? `I/O error ${code}` : undefined;
}
