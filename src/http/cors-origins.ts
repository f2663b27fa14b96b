/**
 * Which browser origins may call the API (`api.cors.origins`). Entries are exact origins
 * (`chrome-extension://<id>`, `https://mail.example.com`) or `moz-extension://*`: Firefox gives each
 * installation of an extension its own random `moz-extension://<uuid>` origin, so no exact entry can
 * name every user's. No other wildcard is accepted: a pattern such as `*` or `https://*.example.com`
 * would let any web page read private keys with a user's token.
 */
export const ANY_FIREFOX_EXTENSION = 'moz-extension://*';

const FIREFOX_EXTENSION_ORIGIN = /^moz-extension:\/\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const EXACT_ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/[^\s/*?#@]+$/;

/** Why an `api.cors.origins` entry is not acceptable, or undefined when it is. */
export function corsOriginProblem(entry: string): string | undefined {
  if (entry === ANY_FIREFOX_EXTENSION) return undefined;
  if (entry.includes('*')) return `only ${ANY_FIREFOX_EXTENSION} may hold a wildcard`;
  if (!EXACT_ORIGIN.test(entry)) return 'expected an origin such as chrome-extension://<id> or https://host[:port], with no path';
  return undefined;
}

/** Whether the request's Origin is one that `entries` allow (entries already checked). */
export function isAllowedOrigin(entries: readonly string[], origin: string): boolean {
  if (origin === '') return false;
  if (entries.includes(origin)) return true;
  return entries.includes(ANY_FIREFOX_EXTENSION) && FIREFOX_EXTENSION_ORIGIN.test(origin);
}
