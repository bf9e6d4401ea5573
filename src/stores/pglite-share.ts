// Sharing an embedded PGlite with other local processes (`keypool keys create` in a second terminal while
// `keypool serve` runs). PGlite admits one process per data directory, so the process that owns it serves it on a
// loopback socket (PostgreSQL wire protocol, via @electric-sql/pglite-socket's connection handler) and advertises
// it in <dataDir>/server.json ({pid, port, token}, mode 0600). Other processes connect with the postgres client.
//
// Why not PGLiteSocketServer as is: its queue serialises single protocol messages, so two clients' extended-protocol
// batches (Parse/Bind/Execute/Sync) can interleave, and the owner's own statements (which call PGlite directly) can
// land inside a socket client's open transaction. Here every socket message runs through a session-aware queue
// that takes the owner's SessionGate from a client's first message until that client is back at an idle point
// (after Sync or a simple Query, outside a transaction). A client that disconnects mid-batch or mid-transaction is
// rolled back and the gate released.
//
// Notifications: PGlite is one backend, so a NOTIFY committed by a socket client comes back on that client's
// socket, not through PGlite's listen() API. The queue scans every response for NotificationResponse messages and
// forwards them to the owner's listeners (PgliteClient.deliverNotification), so a CLI change reaches the serving
// process's snapshot within milliseconds.
//
// Access: the socket listens on 127.0.0.1 only, and a client must present the random token from server.json (which
// only the data directory's owner can read) as its application_name; anything else is refused at startup. The
// startup message is read and checked BEFORE a connection counts against maxConnections, within a short deadline,
// so idle or unauthenticated local connections cannot use up the slots of the real CLI.
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { PgliteClient } from './pglite-client.js';
import { MSG_QUERY, MSG_SYNC, MSG_TERMINATE, NotificationScanner, SYNC_MESSAGE, errorResponse, simpleQuery, startupParameter } from './pg-wire.js';

export const SERVER_FILE = 'server.json';
/** application_name a share client sends: `keypool-share:<token>`. */
export const SHARE_APPLICATION_PREFIX = 'keypool-share:';

/** Contents of <dataDir>/server.json. */
export interface ShareInfo {
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  readonly token: string;
}

export interface PgliteShare {
  readonly host: string;
  readonly port: number;
  /** The advertisement file. */
  readonly file: string;
  /** Connections currently open. */
  connections(): number;
  /** Stops accepting, disconnects clients (rolling back their open transactions), removes server.json. */
  close(): Promise<void>;
}

export interface ShareOptions {
  /** Most socket clients at once (CLI invocations); more are refused with "too many connections". Default 8. */
  readonly maxConnections?: number;
  /** A client idle this long is disconnected (its transaction rolled back), so it cannot hold the gate. Default 60 s. */
  readonly idleTimeoutMs?: number;
  /** How long a new connection has to present its startup message with the token. Default 2 s. */
  readonly handshakeTimeoutMs?: number;
  /** Connections still in their handshake at once; more are closed at once. Default 64. */
  readonly maxPendingHandshakes?: number;
}

/** Serves `client`'s database on 127.0.0.1:<random port> and writes <dataDir>/server.json. */
export async function sharePglite(client: PgliteClient, dataDir: string, options: ShareOptions = {}): Promise<PgliteShare> {
  const token = randomBytes(24).toString('base64url');
  const queue = new SessionQueue(client, token);
  const handlers = new Set<PGLiteSocketHandler>();
  const maxConnections = options.maxConnections ?? 8;
  const idleTimeoutMs = options.idleTimeoutMs ?? 60_000;

  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 2_000;
  const maxPendingHandshakes = options.maxPendingHandshakes ?? 64;
  const expectedApplicationName = Buffer.from(`${SHARE_APPLICATION_PREFIX}${token}`, 'utf8');
  let pendingHandshakes = 0;

  const attach = (socket: Socket, startup: Buffer): void => {
    if (handlers.size >= maxConnections) {
      refuse(socket, errorResponse('53300', 'too many keypool share clients'));
      return;
    }
    const handler = new PGLiteSocketHandler({
      // Duck-typed replacement for the package's internal QueryQueueManager (enqueue/clear* are all it calls).
      queryQueue: queue as unknown as ConstructorParameters<typeof PGLiteSocketHandler>[0]['queryQueue'],
      closeOnDetach: true,
      idleTimeout: idleTimeoutMs,
    });
    handlers.add(handler);
    const forget = (): void => {
      handlers.delete(handler);
    };
    handler.addEventListener('close', forget);
    handler.addEventListener('error', forget);
    // The startup message goes back in front of the stream: the handler (and the queue's own token check) see it.
    socket.unshift(startup);
    handler.attach(socket).then(
      () => socket.resume(),
      () => {
        forget();
        socket.destroy();
      },
    );
  };

  const server = createServer((socket) => {
    // A peer reset while refusing or between phases must not become an uncaught 'error' event.
    socket.on('error', () => undefined);
    if (pendingHandshakes >= maxPendingHandshakes) {
      socket.destroy();
      return;
    }
    pendingHandshakes++;
    void readStartup(socket, handshakeTimeoutMs).then((startup) => {
      pendingHandshakes--;
      if (startup === null) {
        socket.destroy();
        return;
      }
      const presented = startupParameter(startup, 'application_name');
      const ok = presented !== null && presented.length === expectedApplicationName.length && timingSafeEqual(presented, expectedApplicationName);
      if (!ok) {
        refuse(socket, errorResponse('28000', 'not a keypool share client (token missing or wrong)'));
        return;
      }
      attach(socket, startup);
    });
  });
  const host = '127.0.0.1';
  const port = await listen(server, host);
  const file = join(dataDir, SERVER_FILE);
  const info: ShareInfo = { pid: process.pid, host, port, token };
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(info)}\n`, { mode: 0o600 });
  await rename(temp, file);

  let closed = false;
  const share: PgliteShare = {
    host,
    port,
    file,
    connections: () => handlers.size,
    async close() {
      if (closed) return;
      closed = true;
      await removeIfOurs(file, info);
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...handlers].map((handler) => handler.detach(true).catch(() => undefined)));
      handlers.clear();
      await stopped;
    },
  };
  client.onClose(() => share.close());
  return share;
}

/** Sends the error and closes the connection outright (a client that never closes its side holds nothing). */
function refuse(socket: Socket, error: Uint8Array): void {
  socket.end(error, () => socket.destroy());
}

const SSL_REQUEST_CODE = 80877103;
const PROTOCOL_3 = 196608;
/** Longest startup message accepted (a few parameters; PostgreSQL itself allows 10,000 bytes). */
const MAX_STARTUP_BYTES = 10_000;

/**
 * Reads a client's StartupMessage (answering an SSLRequest with 'N' first) and leaves the socket paused with nothing
 * consumed past it; resolves null on a timeout, a malformed or oversized message, or a closed socket.
 */
function readStartup(socket: Socket, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    let buffer: Buffer = Buffer.alloc(0);
    const finish = (startup: Buffer | null, rest: Buffer = Buffer.alloc(0)): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      resolve(startup);
    };
    const onEnd = (): void => finish(null);
    const onData = (chunk: Buffer): void => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      while (buffer.length >= 8) {
        const length = buffer.readInt32BE(0);
        if (length < 8 || length > MAX_STARTUP_BYTES) return finish(null);
        if (length === 8 && buffer.readInt32BE(4) === SSL_REQUEST_CODE) {
          socket.write('N'); // no TLS on a loopback socket; the client goes on in plaintext
          buffer = buffer.subarray(8);
          continue;
        }
        if (buffer.length < length) return;
        if (buffer.readInt32BE(4) !== PROTOCOL_3) return finish(null);
        return finish(buffer.subarray(0, length), buffer.subarray(length));
      }
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.on('data', onData);
    socket.once('error', onEnd);
    socket.once('close', onEnd);
  });
}

/** The live share of a data directory: server.json exists, its pid is alive and its port accepts. Else null. */
export async function findLiveShare(dataDir: string, probeTimeoutMs = 1_000): Promise<ShareInfo | null> {
  const info = await readShareInfo(dataDir);
  if (!info || !processAlive(info.pid)) return null;
  return (await portAccepts(info.host, info.port, probeTimeoutMs)) ? info : null;
}

export async function readShareInfo(dataDir: string): Promise<ShareInfo | null> {
  let text: string;
  try {
    text = await readFile(join(dataDir, SERVER_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    const parsed = JSON.parse(text) as Partial<ShareInfo>;
    if (
      typeof parsed.pid === 'number' &&
      typeof parsed.port === 'number' &&
      typeof parsed.token === 'string' &&
      typeof parsed.host === 'string'
    ) {
      return { pid: parsed.pid, host: parsed.host, port: parsed.port, token: parsed.token };
    }
  } catch {
    // A half-written or foreign file: treat as absent.
  }
  return null;
}

export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function portAccepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (ok: boolean): void => {
      socket.removeAllListeners();
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('socket share: no TCP address'));
      else resolve(address.port);
    });
  });
}

async function removeIfOurs(file: string, info: ShareInfo): Promise<void> {
  try {
    const current = JSON.parse(await readFile(file, 'utf8')) as Partial<ShareInfo>;
    if (current.pid === info.pid && current.port === info.port) await rm(file, { force: true });
  } catch {
    // Already gone or replaced: nothing of ours to remove.
  }
}

// -------------------------------------------------------------------------------------------------
// Session-aware message queue
// -------------------------------------------------------------------------------------------------

interface HandlerState {
  tail: Promise<unknown>;
  authenticated: boolean;
  disconnected: boolean;
  /** Last message was part of an extended-protocol batch not yet closed by Sync. */
  midBatch: boolean;
}

class SessionQueue {
  readonly #client: PgliteClient;
  readonly #token: Buffer;
  readonly #handlers = new Map<number, HandlerState>();
  /** Handler whose session currently holds the gate, and its release. */
  #holder: number | null = null;
  #release: (() => void) | null = null;
  #queued = 0;

  constructor(client: PgliteClient, token: string) {
    this.#client = client;
    this.#token = Buffer.from(`${SHARE_APPLICATION_PREFIX}${token}`, 'utf8');
  }

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    const state = this.#state(handlerId);
    this.#queued++;
    const run = state.tail.then(() => this.#execute(handlerId, state, message, onData));
    state.tail = run.catch(() => undefined).finally(() => this.#queued--);
    return run;
  }

  clearQueueForHandler(handlerId: number): void {
    const state = this.#handlers.get(handlerId);
    if (state) state.disconnected = true;
  }

  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    const state = this.#handlers.get(handlerId);
    if (!state) return;
    state.disconnected = true;
    await state.tail;
    this.#handlers.delete(handlerId);
    if (this.#holder !== handlerId) return;
    const db = this.#client.db;
    try {
      await db.runExclusive(async () => {
        if (state.midBatch) await db.execProtocolRaw(SYNC_MESSAGE);
        if (db.isInTransaction()) await db.execProtocolRaw(simpleQuery('ROLLBACK'));
      });
    } finally {
      this.#releaseGate();
    }
  }

  getQueueLength(): number {
    return this.#queued;
  }

  #state(handlerId: number): HandlerState {
    let state = this.#handlers.get(handlerId);
    if (!state) {
      state = { tail: Promise.resolve(), authenticated: false, disconnected: false, midBatch: false };
      this.#handlers.set(handlerId, state);
    }
    return state;
  }

  async #execute(handlerId: number, state: HandlerState, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    if (state.disconnected) throw new Error('Handler disconnected');
    const type = message[0];
    if (type === 0) return this.#startup(state, message, onData);
    if (!state.authenticated) {
      onData(errorResponse('08P01', 'startup required'));
      return 0;
    }
    if (type === MSG_TERMINATE) return 0;
    if (this.#holder !== handlerId) {
      this.#release = await this.#client.gate.acquire();
      this.#holder = handlerId;
      // Gone while waiting: keep the gate; clearTransactionIfNeeded (always called on detach) releases it.
      if (state.disconnected) throw new Error('Handler disconnected');
    }
    const db = this.#client.db;
    const scanner = new NotificationScanner((channel, payload) => this.#client.deliverNotification(channel, payload));
    let bytes = 0;
    try {
      await db.runExclusive(() =>
        db.execProtocolRawStream(message, {
          onRawData: (data) => {
            bytes += data.length;
            scanner.push(data);
            onData(data);
          },
        }),
      );
    } finally {
      state.midBatch = type !== MSG_SYNC && type !== MSG_QUERY;
      if (!state.midBatch && !db.isInTransaction()) this.#releaseGate();
    }
    return bytes;
  }

  async #startup(state: HandlerState, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    const presented = startupParameter(message, 'application_name');
    const expected = this.#token;
    const ok = presented !== null && presented.length === expected.length && timingSafeEqual(presented, expected);
    if (!ok) {
      onData(errorResponse('28000', 'not a keypool share client (token missing or wrong)'));
      return 0;
    }
    state.authenticated = true;
    let bytes = 0;
    const db = this.#client.db;
    await this.#client.gate.run(() =>
      db.runExclusive(() =>
        db.execProtocolRawStream(message, {
          onRawData: (data) => {
            bytes += data.length;
            onData(data);
          },
        }),
      ),
    );
    return bytes;
  }

  #releaseGate(): void {
    const release = this.#release;
    this.#holder = null;
    this.#release = null;
    release?.();
  }
}
