import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';

/**
 * An HTTP CONNECT proxy (RFC 9110 section 9.3.6) that sends every tunnel to one local port, whatever
 * host the client asked for, and records what was asked. With `grpc_proxy` pointing at it, a daemon
 * whose Cloud Logging output uses its default endpoint (logging.googleapis.com:443) reaches a local
 * stand-in instead, over TLS that the client still verifies for logging.googleapis.com.
 */
export class RedirectingConnectProxy {
  readonly targets: string[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: http.Server) {}

  static async start(forwardTo: () => number): Promise<RedirectingConnectProxy> {
    const server = http.createServer((_req, res) => res.writeHead(405).end());
    const proxy = new RedirectingConnectProxy(server);
    server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      proxy.targets.push(req.url ?? '');
      proxy.sockets.add(client);
      const upstream = net.connect(forwardTo(), '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length > 0) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      proxy.sockets.add(upstream);
      const destroy = () => {
        client.destroy();
        upstream.destroy();
      };
      upstream.on('error', destroy);
      client.on('error', destroy);
      upstream.on('close', destroy);
      client.on('close', destroy);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
