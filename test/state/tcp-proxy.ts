// A TCP proxy in front of the real Redis that a test can stop, restart on the same port, or slow down.
import net from 'node:net';

export class TcpProxy {
  /** Delay applied to every chunk coming back from the target (simulates a slow Redis). */
  delayMs = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private portNumber = 0;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  get port(): number {
    return this.portNumber;
  }

  /** Listens on `port` (default: the previous port, or a free one the first time). */
  start(port = this.portNumber): Promise<number> {
    const server = net.createServer((client) => this.connect(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        this.portNumber = (server.address() as net.AddressInfo).port;
        resolve(this.portNumber);
      });
    });
  }

  /** Stops listening and drops every open connection (Redis "goes away"). */
  stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server === null) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private connect(client: net.Socket): void {
    const upstream = net.connect(this.targetPort, this.targetHost);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (this.delayMs > 0) setTimeout(() => client.write(chunk), this.delayMs);
      else client.write(chunk);
    });
  }
}

/** A TCP port with nothing listening on it (bound, read, released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
