import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';

/** A real HTTP CONNECT proxy on 127.0.0.1 that records the tunnels it opened. */
export class ConnectProxy {
  readonly tunnels: string[] = [];
  private constructor(private readonly server: http.Server, readonly url: string) {}

  static async start(): Promise<ConnectProxy> {
    const server = http.createServer((_req, res) => res.writeHead(405).end());
    let proxy: ConnectProxy | undefined;
    server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      proxy!.tunnels.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    proxy = new ConnectProxy(server, `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    return proxy;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}
