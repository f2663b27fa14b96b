import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every series the EKM exports, in this process's own registry (never prom-client's global one).
 * Each process (the primary and every worker) fills its own; the primary aggregates them for a
 * scrape (src/metrics/cluster-metrics.ts). Labels hold bounded values only: route patterns, status
 * codes, operation names, stable error codes, output names. Never an email, token or fingerprint.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** Latency buckets, in seconds: requests and store round trips take milliseconds to a few seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const httpRequests = new Counter({
  name: 'ekm_http_requests_total',
  help: 'HTTP requests answered, by route pattern, method and status.',
  labelNames: ['route', 'method', 'status'] as const,
  registers: [registry],
});

export const httpRequestDuration = new Histogram({
  name: 'ekm_http_request_duration_seconds',
  help: 'Time from receiving a request to its answer, by route pattern and method.',
  labelNames: ['route', 'method'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const storeOperations = new Counter({
  name: 'ekm_store_operations_total',
  help: 'Key store operations, by operation and outcome (ok, or the error code).',
  labelNames: ['operation', 'outcome'] as const,
  registers: [registry],
});

export const storeOperationDuration = new Histogram({
  name: 'ekm_store_operation_duration_seconds',
  help: 'Key store operation latency, by operation.',
  labelNames: ['operation'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const tokenVerifications = new Counter({
  name: 'ekm_token_verifications_total',
  help: 'ID token verifications, by outcome (ok, or the error code such as ERR_TOKEN_EXPIRED).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const jwksFetches = new Counter({
  name: 'ekm_jwks_fetches_total',
  help: "Fetches of the identity provider's JSON Web Key Set, by outcome (ok or error).",
  labelNames: ['outcome'] as const,
  registers: [registry],
});

let identityProviderCheck: (() => Promise<unknown>) | undefined;

/** The process's identity provider check, run at scrape time so that an idle service's value stays current. */
export function checkIdentityProviderOnScrape(check: () => Promise<unknown>): void {
  identityProviderCheck = check;
}

/** Set by each JWKS fetch (src/auth/jwks-cache.ts); the cluster's value is the worst worker's. */
export const identityProviderUp = new Gauge({
  name: 'ekm_idp_up',
  help: "1 when the identity provider's JWKS could be fetched at the last try, 0 when it could not (tried again at scrape time when older than 30 s).",
  aggregator: 'min',
  registers: [registry],
  async collect() {
    await identityProviderCheck?.();
  },
});

export const logEntriesLost = new Counter({
  name: 'ekm_log_entries_lost_total',
  help: 'Log entries a remote output lost, by output and reason (dropped: its buffer was full; failed: not delivered). Counted when the loss is reported.',
  labelNames: ['output', 'reason'] as const,
  registers: [registry],
});
