import { BlockList, isIP } from 'node:net';

/** Most X-Forwarded-For hops walked: a longer chain than this is no proxy set-up anyone runs. */
const MAX_FORWARDED_HOPS = 32;

/**
 * Why an `api.proxy.trusted` entry is unusable (an address, or a CIDR such as 10.0.0.0/8 or
 * fd00::/8), or undefined when it is fine.
 */
export function trustedProxyProblem(entry: string): string | undefined {
  const [address, prefix, extra] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || extra !== undefined) return 'expected an IPv4 or IPv6 address, or a CIDR such as 10.0.0.0/8 or fd00::/8';
  if (prefix === undefined) return undefined;
  const bits = /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
  if (!(bits >= 0 && bits <= (family === 4 ? 32 : 128))) return `the prefix length must be a whole number from 0 to ${family === 4 ? 32 : 128}`;
  return undefined;
}

/** The peers whose X-Forwarded-For and X-Forwarded-Proto are believed; entries validated at config load. */
export function trustedProxies(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const type = isIP(address) === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return list;
}

/** Who sent a request, as far as the trusted proxies in front of the EKM tell. */
export interface ClientOrigin {
  /** The client's address: the first untrusted hop, walking X-Forwarded-For from the right. */
  readonly address: string;
  /** `https` or `http` as the nearest trusted proxy says; the EKM's own scheme otherwise. */
  readonly protocol: string;
}

/**
 * The client behind a chain of trusted proxies. Starting at the TCP peer, each trusted hop hands
 * over to the address it appended to X-Forwarded-For (the rightmost not yet walked); the first hop
 * that is not trusted is the client. An untrusted peer's headers are ignored entirely: anyone can
 * send them. A hop that is not an address stops the walk at the last address known good.
 */
export function clientOrigin(
  trusted: BlockList,
  peer: string | undefined,
  ownProtocol: string,
  forwardedFor: string | undefined,
  forwardedProto: string | undefined,
): ClientOrigin {
  const start = normalise(peer ?? '');
  if (start === undefined || !isTrusted(trusted, start)) return { address: start ?? 'unknown', protocol: ownProtocol };
  // The nearest trusted proxy sets or appends the scheme it received: its value is the rightmost.
  const proto = forwardedProto?.split(',').at(-1)?.trim().toLowerCase();
  const protocol = proto === 'https' || proto === 'http' ? proto : ownProtocol;
  const hops = (forwardedFor ?? '').split(',').slice(-MAX_FORWARDED_HOPS);
  let address = start;
  while (isTrusted(trusted, address) && hops.length > 0) {
    const next = normalise(hops.pop()!.trim());
    if (next === undefined) break;
    address = next;
  }
  return { address, protocol };
}

function isTrusted(trusted: BlockList, address: string): boolean {
  return trusted.check(address, isIP(address) === 4 ? 'ipv4' : 'ipv6');
}

/**
 * An address as a hop gives it: IPv4-mapped IPv6 (`::ffff:10.0.0.1`, how a dual-stack socket
 * reports IPv4 peers) becomes IPv4, and a port (`10.0.0.1:5000`, `[fd00::1]:5000`) is dropped.
 * Undefined when it is not an address.
 */
function normalise(hop: string): string | undefined {
  let address = hop;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(address);
  if (bracketed !== null) address = bracketed[1]!;
  else if (/^[\d.]+:\d{1,5}$/.test(address)) address = address.slice(0, address.lastIndexOf(':'));
  const mapped = /^::ffff:([\d.]+)$/i.exec(address);
  if (mapped !== null) address = mapped[1]!;
  return isIP(address) === 0 ? undefined : address;
}
