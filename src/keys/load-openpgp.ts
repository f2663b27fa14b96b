import type * as openpgp from 'openpgp';

let loading: Promise<typeof openpgp> | undefined;

/**
 * OpenPGP.js, loaded by the first request that parses a key (a PUT, a WKD lookup) rather than at
 * every worker's start, where it cost about 17 MB and 0.15-0.2 s against the 120 MB per worker and
 * 1.5 s readiness targets of the benchmark (README, Performance); the key fetch never needs it.
 */
export function loadOpenpgp(): Promise<typeof openpgp> {
  loading ??= import('openpgp');
  return loading;
}
