import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Config } from '../../config/config.js';
import { NotFoundError } from '../../errors.js';
import { localPartOf, normalizeDomain, normalizeEmailAddress } from '../../keys/email-address.js';
import { isWkdHashOf, WKD_HASH_PATTERN } from '../../keys/wkd-hash.js';
import { wkdPublicKey } from '../../keys/wkd-public-key.js';
import type { Store } from '../../stores/store.js';
import type { EkmState } from '../ekm-state.js';
import { StoredKeyAnswerCache } from '../stored-key-answer-cache.js';

type Ctx = Context & { state: EkmState; params: Record<string, string> };

/**
 * Paths of the Web Key Directory, also behind a reverse proxy's prefix. Its answers are public and
 * read by web apps of any origin, so CORS allows every origin here whatever `api.cors.origins` says.
 */
export const WKD_PATH = /\/\.well-known\/openpgpkey\//;

/** Per worker: a WKD answer carries only the requested address's user ids, so it is small. */
const ANSWER_CACHE = { maxEntries: 2000, maxBytes: 16 * 1024 * 1024 } as const;

/**
 * The Web Key Directory (draft-koch-openpgp-webkey-service): the public keys of the users of the
 * organisation's domains (`org.domains`; unset: every domain), unauthenticated.
 * - advanced method, section 3.1: `/.well-known/openpgpkey/<domain>/hu/<hash>?l=<local part>`, served at
 *   `openpgpkey.<domain>`; the domain is in the path.
 * - direct method: `/.well-known/openpgpkey/hu/<hash>?l=<local part>`, served at `<domain>`; the domain
 *   is the request's Host. Behind a reverse proxy that does not pass the Host on, an EKM that
 *   serves exactly one domain answers for it.
 * The hash alone cannot be reversed and the Store indexes by email, so `l` (sent by GnuPG, Thunderbird
 * and the FlowCrypt apps) is required; it must hash to `<hash>`.
 */
export function wkdRoutes(router: Router<EkmState>, config: Config, store: Store): void {
  const domains = config.org.domains;
  // Parsing a user's keys (up to api.keys.max.bytes.per.user of them) is done once per content of
  // those keys, not once per anonymous request.
  const answers = new StoredKeyAnswerCache(ANSWER_CACHE);
  const serves = (domain: string) => domains === undefined || domains.includes(domain);

  const directDomain = (ctx: Ctx): string | undefined => {
    const host = normalizeDomain(ctx.hostname);
    if (host !== undefined && serves(host)) return host;
    return domains?.length === 1 ? domains[0] : undefined;
  };

  const requireServed = (domain: string | undefined): string => {
    if (domain === undefined || !serves(domain)) {
      throw new NotFoundError('No Web Key Directory for this domain', domain === undefined ? 'The Host is not a domain this key manager serves' : `Domain: ${domain}`);
    }
    return domain;
  };

  const publicHeaders = (ctx: Ctx) => {
    ctx.set('Access-Control-Allow-Origin', '*');
    ctx.set('Cross-Origin-Resource-Policy', 'cross-origin');
  };

  const keys = (domainOf: (ctx: Ctx) => string | undefined) => async (ctx: Ctx) => {
    publicHeaders(ctx);
    const domain = requireServed(domainOf(ctx));
    const hash = ctx.params.hash ?? '';
    if (!WKD_HASH_PATTERN.test(hash)) throw new NotFoundError('Not a Web Key Directory hash', 'Expected 32 z-base-32 characters');
    const local = localPartParameter(ctx.querystring);
    if (local === undefined || local === '') {
      throw new NotFoundError('No key found', 'This directory needs the local part in the l query parameter');
    }
    // The one email rule: a local part it refuses (non-ASCII, a quote, a second @) names nobody.
    const email = normalizeEmailAddress(`${local}@${domain}`);
    if (email === undefined || !isWkdHashOf(hash, localPartOf(email))) {
      throw new NotFoundError('No key found', 'The l query parameter does not hash to the requested hash');
    }
    const stored = await store.listByEmail(email);
    const body = await answers.answer(email, stored, async () => {
      const binaries: Uint8Array[] = [];
      for (const key of stored) {
        const binary = await wkdPublicKey(key.publicKey, email);
        if (binary !== undefined) binaries.push(binary);
      }
      return Buffer.concat(binaries);
    });
    if (body.length === 0) throw new NotFoundError('No key found');
    ctx.type = 'application/octet-stream';
    ctx.body = body;
  };

  // Section 4.5: the policy file says the directory exists; it sets no flags (no submission service).
  const policy = (domainOf: (ctx: Ctx) => string | undefined) => (ctx: Ctx) => {
    publicHeaders(ctx);
    requireServed(domainOf(ctx));
    ctx.type = 'text/plain';
    ctx.body = '';
  };

  const pathDomain = (ctx: Ctx) => (ctx.params.domain === undefined ? undefined : normalizeDomain(ctx.params.domain));
  router.get('/.well-known/openpgpkey/hu/:hash', keys(directDomain));
  router.get('/.well-known/openpgpkey/policy', policy(directDomain));
  router.get('/.well-known/openpgpkey/:domain/hu/:hash', keys(pathDomain));
  router.get('/.well-known/openpgpkey/:domain/policy', policy(pathDomain));
}

/**
 * The `l` query parameter, percent-decoded only: a `+` stays a `+` (local parts such as
 * `user+tag` are common and some clients do not escape it; form decoding would make it a space).
 */
function localPartParameter(querystring: string): string | undefined {
  const m = /(?:^|&)l=([^&]*)/.exec(querystring);
  if (m === null) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
}
