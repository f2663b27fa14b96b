import { ConfigError } from '../errors.js';

/**
 * The exit statuses of every command, the serving daemon included. A configuration error has its
 * own (EX_CONFIG of sysexits.h): the unit does not restart on it (RestartPreventExitStatus=78), since
 * the same file would fail the same way every few seconds, while a crash or a store failure restarts.
 */
export const EXIT_OK = 0;
/** A store, runtime or I/O failure. */
export const EXIT_FAILURE = 1;
/** Arguments the command line does not take. */
export const EXIT_USAGE = 2;
/** The configuration (the properties file or a file it names) cannot work. */
export const EXIT_CONFIG = 78;

/** The status a command that failed with `e` exits with. */
export function failureStatus(e: unknown): number {
  return e instanceof ConfigError ? EXIT_CONFIG : EXIT_FAILURE;
}
