import { EnvHttpProxyAgent, fetch as undiciFetch } from 'undici';

/** `fetch` for calls to the identity provider (discovery, JWKS). */
export type OutboundFetch = typeof globalThis.fetch;

/**
 * A fetch that honours the standard proxy environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, or their
 * lowercase forms), as operators expect of a daemon behind a corporate proxy; Node 20's own fetch
 * ignores them. Certificates are verified against the system CAs plus NODE_EXTRA_CA_CERTS.
 */
export function createOutboundFetch(env: NodeJS.ProcessEnv): OutboundFetch {
  const pick = (name: string) => env[name] ?? env[name.toLowerCase()];
  const dispatcher = new EnvHttpProxyAgent({
    ...(pick('HTTP_PROXY') ? { httpProxy: pick('HTTP_PROXY') } : {}),
    ...(pick('HTTPS_PROXY') ? { httpsProxy: pick('HTTPS_PROXY') } : {}),
    ...(pick('NO_PROXY') ? { noProxy: pick('NO_PROXY') } : {}),
  });
  return ((input: Parameters<OutboundFetch>[0], init?: Parameters<OutboundFetch>[1]) =>
    undiciFetch(input as Parameters<typeof undiciFetch>[0], { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher })) as unknown as OutboundFetch;
}
