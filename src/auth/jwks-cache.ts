import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { IdentityProviderUnavailableError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { jwksFetches } from '../metrics/ekm-metrics.js';
import type { OutboundFetch } from './outbound-fetch.js';

/** Refetch on an unknown `kid` at most this often: a rotated key must work within seconds. */
export const UNKNOWN_KID_REFETCH_INTERVAL_MS = 5_000;
/** Freshness when the JWKS response has no usable Cache-Control max-age. */
const DEFAULT_MAX_AGE_MS = 5 * 60_000;
const FETCH_TIMEOUT_MS = 5_000;

/**
 * The issuer's JSON Web Key Set, fetched over HTTPS and kept as long as its Cache-Control allows.
 * On an unknown `kid` it refetches, rate-limited. When it has never been fetched, or a needed key
 * cannot be found because the IdP is unreachable, it throws IdentityProviderUnavailableError (503).
 */
export class JwksCache {
  private keys: JWTVerifyGetKey | undefined;
  private freshUntil = 0;
  private lastFetch = 0;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly locate: () => Promise<string>,
    private readonly fetch: OutboundFetch,
    private readonly logger: Logger,
  ) {}

  /** The key resolver for jose's jwtVerify: refreshes when stale or when the kid is unknown. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (this.keys === undefined || Date.now() >= this.freshUntil) await this.refresh(this.keys === undefined);
    try {
      return await this.keys!(header, token);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw e;
      // A key the IdP has just rotated in: wait out the refetch interval rather than answer 401,
      // which would make the client sign its user in again. Concurrent requests share one fetch.
      const fetchedBefore = this.lastFetch;
      const wait = fetchedBefore + UNKNOWN_KID_REFETCH_INTERVAL_MS - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (this.lastFetch === fetchedBefore || this.inFlight !== undefined) await this.refresh(true);
      return this.keys!(header, token);
    }
  };

  /** Fetches the JWKS; with `required`, failure is a 503, otherwise stale keys stay in use. */
  private async refresh(required: boolean): Promise<void> {
    this.inFlight ??= this.fetchKeys()
      .then(
        () => jwksFetches.inc({ outcome: 'ok' }),
        (e: unknown) => {
          jwksFetches.inc({ outcome: 'error' });
          throw e;
        },
      )
      .finally(() => (this.inFlight = undefined));
    try {
      await this.inFlight;
    } catch (e) {
      const details = e instanceof Error ? e.message : String(e);
      if (required || this.keys === undefined) throw new IdentityProviderUnavailableError(details);
      this.logger.warn('JWKS refresh failed, still using the keys fetched before', { reason: details });
    }
  }

  private async fetchKeys(): Promise<void> {
    this.lastFetch = Date.now();
    const url = await this.locate();
    let response: Response;
    try {
      response = await this.fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { accept: 'application/json' } });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`Cannot fetch the JWKS from ${url}: ${cause?.code ?? cause?.message ?? (e as Error).message}`, { cause: e });
    }
    if (!response.ok) throw new Error(`Cannot fetch the JWKS from ${url}: HTTP ${response.status}`);
    let jwks: JSONWebKeySet;
    try {
      jwks = (await response.json()) as JSONWebKeySet;
      if (!Array.isArray(jwks.keys)) throw new Error('no keys array');
    } catch {
      throw new Error(`The JWKS at ${url} is not a JSON Web Key Set`);
    }
    this.keys = createLocalJWKSet(jwks);
    this.freshUntil = Date.now() + maxAge(response.headers.get('cache-control'));
    this.logger.debug('JWKS fetched', { url, keys: jwks.keys.length });
  }
}

function maxAge(cacheControl: string | null): number {
  if (cacheControl === null) return DEFAULT_MAX_AGE_MS;
  if (/\b(no-store|no-cache)\b/i.test(cacheControl)) return 0;
  const m = /\bmax-age=(\d+)/i.exec(cacheControl);
  return m ? Number(m[1]) * 1000 : DEFAULT_MAX_AGE_MS;
}
