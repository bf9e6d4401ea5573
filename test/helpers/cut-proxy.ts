// A TCP proxy between keypool replicas and a real service (Redis, PostgreSQL) that a test can cut and restore on the
// same port, or slow down, without touching the service other test files share.
import net from 'node:net';

export class CutProxy {
  /** Delay added to every chunk coming back from the service (a slow Redis). */
  delayMs = 0;
  /** Delay added to every chunk going to the service (a slow link from one replica: its writes land late). */
  delayToServiceMs = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private portNumber = 0;
  private lastActivity = 0;
  private connections = 0;
  /** While set, nothing crosses the proxy (a network partition: no RST, packets just vanish until it heals). */
  private partition: { readonly held: Array<() => void> } | null = null;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  get port(): number {
    return this.portNumber;
  }

  /** Connections accepted since start (tells a test the clients really reconnected through it). */
  get accepted(): number {
    return this.connections;
  }

  get isCut(): boolean {
    return this.server === null;
  }

  /** Listens (on the previous port after a cut; a free one the first time). */
  start(): Promise<number> {
    const server = net.createServer((client) => this.forward(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.portNumber, '127.0.0.1', () => {
        this.portNumber = (server.address() as net.AddressInfo).port;
        resolve(this.portNumber);
      });
    });
  }

  /** The service "goes away": stop listening (new connections are refused) and drop every open connection. */
  cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server === null) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  restore(): Promise<number> {
    return this.start();
  }

  /**
   * A partition rather than a refusal: connections stay open and new ones are accepted, but no byte goes through in
   * either direction (clients see silence, not an error) until heal() delivers everything held, like TCP after a
   * partition heals.
   */
  partitionOn(): void {
    this.partition ??= { held: [] };
  }

  heal(): void {
    const partition = this.partition;
    this.partition = null;
    for (const release of partition?.held ?? []) release();
  }

  /** Runs `send` now, or when the partition heals. */
  private pass(send: () => void): void {
    if (this.partition !== null) this.partition.held.push(send);
    else send();
  }

  /**
   * Resolves once no byte has crossed the proxy for quietMs (within timeoutMs, else anyway). Cutting in a quiet moment
   * keeps the cut from landing between a COMMIT reaching the server and its answer reaching the client, the one
   * instant where a client cannot know whether its write happened.
   */
  async quiet(quietMs: number, timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (Date.now() - this.lastActivity >= quietMs) return true;
      await new Promise((r) => setTimeout(r, 5));
    }
    return false;
  }

  private forward(client: net.Socket): void {
    this.connections++;
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
    client.on('data', (chunk: Buffer) => this.pass(() => toService(chunk)));
    upstream.on('data', (chunk: Buffer) => this.pass(() => toClient(chunk)));
    const toService = this.delayedWriter(upstream, () => this.delayToServiceMs);
    const toClient = this.delayedWriter(client, () => this.delayMs);
  }

  /**
   * Writes chunks to `socket` after delayMs(). Chunks keep their order when the delay changes mid-connection (a reply
   * overtaking an earlier one would corrupt the protocol stream, which is not the fault being simulated): one queue
   * per direction, one timer draining it.
   */
  private delayedWriter(socket: net.Socket, delayMs: () => number): (chunk: Buffer) => void {
    const queue: Array<{ readonly atMs: number; readonly chunk: Buffer }> = [];
    let timer: NodeJS.Timeout | null = null;
    const pump = (): void => {
      timer = null;
      while (queue.length > 0 && queue[0]!.atMs <= Date.now()) {
        const { chunk } = queue.shift()!;
        if (!socket.destroyed) socket.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(pump, queue[0]!.atMs - Date.now());
    };
    return (chunk: Buffer): void => {
      const now = Date.now();
      this.lastActivity = now;
      const last = queue.length > 0 ? queue[queue.length - 1]!.atMs : 0;
      queue.push({ atMs: Math.max(now + delayMs(), last), chunk });
      if (timer === null) pump();
    };
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
