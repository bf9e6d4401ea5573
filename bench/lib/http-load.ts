// A lean HTTP/1.1 client for load: keep-alive connections on raw sockets, one request per connection at a time (no
// pipelining), the request bytes prepared once, responses framed by Content-Length only. When every connection is
// busy a new one is opened up to `maxConnections`; beyond that requests wait in a FIFO, and since constantRate()
// measures from the scheduled time that wait counts in the latency (no coordinated omission).
import { Socket, createConnection } from 'node:net';
import type { Fire } from './load.js';

export interface HttpLoadCounts {
  ok: number;
  non2xx: number;
  errors: number;
  statuses: Record<number, number>;
}

const HEADER_END = Buffer.from('\r\n\r\n');

class Connection {
  private pending: Buffer | null = null;
  private callback: ((status: number) => void) | null = null;
  readonly ready: Promise<void>;

  constructor(
    readonly socket: Socket,
    private readonly onFree: (connection: Connection) => void,
    private readonly onDead: (connection: Connection) => void,
  ) {
    socket.setNoDelay(true);
    this.ready = new Promise((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const callback = this.callback;
      this.callback = null;
      this.onDead(this);
      callback?.(-1);
    });
  }

  send(request: Buffer, callback: (status: number) => void): void {
    this.callback = callback;
    this.socket.write(request);
  }

  private onData(chunk: Buffer): void {
    const buffer = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    const headerEnd = buffer.indexOf(HEADER_END);
    if (headerEnd < 0) {
      this.pending = buffer;
      return;
    }
    const head = buffer.toString('latin1', 0, headerEnd);
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const total = headerEnd + 4 + (length ? Number(length[1]) : 0);
    if (buffer.length < total) {
      this.pending = buffer;
      return;
    }
    this.pending = null;
    const callback = this.callback;
    this.callback = null;
    this.onFree(this);
    callback?.(status);
  }
}

export class HttpLoad {
  readonly counts: HttpLoadCounts = { ok: 0, non2xx: 0, errors: 0, statuses: {} };
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly waiting: Array<(connection: Connection) => void> = [];
  private opening = 0;

  constructor(
    private readonly port: number,
    private readonly request: Buffer,
    private readonly maxConnections = 256,
  ) {}

  /** `POST path` with a JSON body and the given headers, as bytes. */
  static post(port: number, path: string, headers: Record<string, string>, body: string): Buffer {
    const lines = [`POST ${path} HTTP/1.1`, `host: 127.0.0.1:${port}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    lines.push(`content-length: ${Buffer.byteLength(body)}`);
    return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`, 'latin1');
  }

  /** Opens `count` connections ahead of a run (so the run does not pay for TCP handshakes). */
  async prewarm(count: number): Promise<void> {
    const fresh: Connection[] = [];
    while (this.all.size < Math.min(count, this.maxConnections)) fresh.push(this.open());
    await Promise.all(fresh.map((c) => c.ready));
    for (const c of fresh) this.idle.push(c);
  }

  readonly fire: Fire = (done) => {
    const run = (connection: Connection): void =>
      connection.send(this.request, (status) => {
        const counts = this.counts;
        if (status < 0) counts.errors++;
        else {
          counts.statuses[status] = (counts.statuses[status] ?? 0) + 1;
          if (status >= 200 && status < 300) counts.ok++;
          else counts.non2xx++;
        }
        done(status >= 200 && status < 300);
      });
    const idle = this.idle.pop();
    if (idle) return run(idle);
    this.waiting.push(run);
    if (this.all.size + this.opening < this.maxConnections) {
      const connection = this.open();
      this.opening++;
      connection.ready.then(
        () => {
          this.opening--;
          this.free(connection);
        },
        () => {
          this.opening--;
        },
      );
    }
  };

  close(): void {
    for (const connection of this.all) connection.socket.destroy();
    this.all.clear();
    this.idle.length = 0;
    this.waiting.length = 0;
  }

  /**
   * Between runs: forget requests a finished run left waiting for a connection (they would otherwise be sent ahead of
   * the next run's) and drop connections still busy with its answers. Returns how many requests were dropped.
   */
  reset(): number {
    const dropped = this.waiting.length;
    this.waiting.length = 0;
    for (const connection of [...this.all]) {
      if (!this.idle.includes(connection)) {
        connection.socket.destroy();
        this.all.delete(connection);
      }
    }
    return dropped;
  }

  get connections(): number {
    return this.all.size;
  }

  private open(): Connection {
    const connection = new Connection(
      createConnection(this.port, '127.0.0.1'),
      (c) => this.free(c),
      (c) => {
        this.all.delete(c);
        const i = this.idle.indexOf(c);
        if (i >= 0) this.idle.splice(i, 1);
      },
    );
    this.all.add(connection);
    return connection;
  }

  private free(connection: Connection): void {
    const next = this.waiting.shift();
    if (next) next(connection);
    else this.idle.push(connection);
  }
}
