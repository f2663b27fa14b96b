/** `fetch` for calls to the identity provider (discovery, JWKS). */
export type OutboundFetch = typeof globalThis.fetch;

/**
 * A fetch that honours the standard proxy environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, or their
 * lowercase forms), as operators expect of a daemon behind a corporate proxy; Node 20's own fetch
 * ignores them. Certificates are verified against the system CAs plus NODE_EXTRA_CA_CERTS.
 */
export function createOutboundFetch(env: NodeJS.ProcessEnv): OutboundFetch {
  const pick = (name: string) => env[name] ?? env[name.toLowerCase()];
  const httpProxy = pick('HTTP_PROXY');
  const httpsProxy = pick('HTTPS_PROXY');
  // Without a proxy, undici's EnvHttpProxyAgent is a plain agent, which is what Node's own fetch
  // (undici inside Node) is: the undici package is then not loaded at all, a quarter of a second
  // of every worker's start.
  if (!httpProxy && !httpsProxy) return (input, init) => globalThis.fetch(input, init);
  const noProxy = pick('NO_PROXY');
  let proxied: Promise<{ fetch: typeof import('undici').fetch; dispatcher: import('undici').Dispatcher }> | undefined;
  return async (input: Parameters<OutboundFetch>[0], init?: Parameters<OutboundFetch>[1]) => {
    proxied ??= import('undici').then((undici) => ({
      fetch: undici.fetch,
      dispatcher: new undici.EnvHttpProxyAgent({
        ...(httpProxy ? { httpProxy } : {}),
        ...(httpsProxy ? { httpsProxy } : {}),
        ...(noProxy ? { noProxy } : {}),
      }),
    }));
    const { fetch, dispatcher } = await proxied;
    return fetch(input as Parameters<typeof fetch>[0], { ...(init as Parameters<typeof fetch>[1]), dispatcher });
  };
}
