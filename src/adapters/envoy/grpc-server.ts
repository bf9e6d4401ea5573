// A minimal gRPC server on node:http2, serving keypool's two services (ext_proc Process, grpc.health.v1.Health) with
// the call objects grpc-js hands its handlers, so stream.ts and health.ts do not depend on the transport.
//
// Why not grpc-js (measured, README "Performance"): behind Envoy a grpc-js server that does nothing but answer
// CONTINUE spent about as much CPU per request as all of keypool's decision work; its generic machinery
// (interceptor chain, per-call metadata objects, trace strings, status objects) runs twice per request. This server
// does only what the two services need:
// - unary, server-streaming and bidi-streaming methods, registered as with grpc-js (ServiceDefinition + handlers);
// - gRPC framing (5-byte prefix), uncompressed messages only (Envoy does not compress ext_proc traffic; a
//   compressed message is refused with UNIMPLEMENTED), a bound on message size;
// - statuses as trailers, or trailers-only before any message; `grpc-message` percent-encoded;
// - a peer reset or a client gone before the status is a cancellation ('cancelled', `cancelled` true), never an
//   error: Envoy resets each ext_proc stream after its last answer unless told to close gracefully (envoy.yaml), and
//   that is a normal end for keypool. Node's HTTP/2 layer builds no error object for such resets (code NO_ERROR or
//   CANCEL), and neither does this server.
// - TLS (server certificate, and client certificates for mTLS) through node:http2's own secure server options;
//   request metadata (e.g. a bearer token) through `call.metadata.get()`, as with grpc-js.
// Deadlines (`grpc-timeout`) are not enforced: Envoy's ext_proc message_timeout bounds every exchange on its side.
import { EventEmitter } from 'node:events';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type * as tls from 'node:tls';
import { status as Status, type ServiceDefinition } from '@grpc/grpc-js';

export { Status };

/** A gRPC status to end a call with (what grpc-js handlers emit as 'error' or pass to a unary callback). */
export interface StatusObject {
  readonly code: number;
  readonly details?: string;
}

export interface GrpcServerOptions {
  /**
   * TLS for the listener: node:http2 secure server options (key, cert; `ca` + `requestCert: true` for mTLS, and
   * then `rejectUnauthorized` stays true). Absent: plaintext HTTP/2 (h2c), for a loopback sidecar.
   */
  readonly tls?: http2.SecureServerOptions | undefined;
  /** Largest request message accepted, in bytes (grpc-js's default: 4 MiB). */
  readonly maxMessageBytes?: number | undefined;
  /**
   * Decides from a call's request metadata whether it may run at all (a bearer token, channel-security.ts); a call
   * it refuses ends UNAUTHENTICATED in its first HEADERS frame, before any handler or message decoding. Absent: all.
   */
  readonly authorize?: ((metadata: Metadata) => boolean) | undefined;
}

const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** `sendDate: false`: no `date` header on gRPC responses (Node adds one by default; nobody reads it). Untyped in @types/node 20. */
const END_STREAM = { endStream: true, sendDate: false } as http2.ServerStreamResponseOptions;
const WAIT_FOR_TRAILERS = { waitForTrailers: true, sendDate: false } as http2.ServerStreamResponseOptions;

/**
 * Handlers by method name, as for grpc-js's Server#addService (each gets the GrpcServerCall, and unary ones a callback).
 * Their parameter types come from each service's definition, which this generic registry cannot know.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ServiceImplementation = Record<string, (...args: any[]) => void>;

/** Request metadata, read like grpc-js's Metadata: lower-case keys, values as strings (`-bin` keys as Buffers). */
export class Metadata {
  constructor(private readonly headers: http2.IncomingHttpHeaders) {}

  get(key: string): Array<string | Buffer> {
    const name = key.toLowerCase();
    const value = this.headers[name];
    if (value === undefined) return [];
    const values = Array.isArray(value) ? value : [value];
    return name.endsWith('-bin') ? values.map((v) => Buffer.from(v, 'base64')) : values;
  }
}

// The service definition's (de)serializers are typed per message; this registry holds them all.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Serialize = (value: any) => Buffer;
type Deserialize = (bytes: Buffer) => unknown;

/**
 * One call, as grpc-js's ServerDuplexStream / ServerWritableStream / ServerUnaryCall present it to a handler:
 * events 'data' (a request message), 'end' (the client half-closed), 'cancelled' (the client reset or went away
 * before the status), 'error' (emitted by the handler with a StatusObject to end the call with that status; emitted
 * by the server after it ended the call for a malformed request), 'close'; write(), end() (status OK), `cancelled`,
 * `writableEnded`, `metadata`, and `request` for unary and server-streaming methods.
 */
export class GrpcServerCall<Request = unknown, Response = unknown> extends EventEmitter {
  cancelled = false;
  request: Request | undefined = undefined;
  private statusSent = false;
  private headersSent = false;
  /** DATA chunks of the message being reassembled (concatenated once, when it is complete: linear in its size). */
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  /** Frame length (5-byte prefix + message) of the message being reassembled, once its prefix has arrived. */
  private frameBytes: number | null = null;
  private pendingStatus: StatusObject | null = null;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    /** The call's request metadata (read once per call by the server, shared with its authorization check). */
    readonly metadata: Metadata,
    private readonly serialize: Serialize,
    private readonly deserialize: Deserialize,
    private readonly maxMessageBytes: number,
  ) {
    super();
    // As grpc-js: a handler ends a call with a status by emitting it as 'error'.
    this.on('error', (err: unknown) => this.sendStatus(statusOf(err)));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => {
      // Node also ends the readable side of a stream the peer reset: that is no half-close.
      if (!this.statusSent && !this.cancelled) this.emit('end');
    });
    // Node emits 'aborted' when the peer resets a stream whose writable side is still open.
    stream.on('aborted', () => this.onCancelled());
    // Errors on the stream (e.g. a reset with an error code) end it; 'close' follows and tells the handler.
    stream.on('error', () => undefined);
    stream.on('close', () => {
      if (!this.statusSent) this.onCancelled();
      this.emit('close');
    });
  }

  get writableEnded(): boolean {
    return this.statusSent;
  }

  /** The HTTP/2 stream is gone (reset or closed by either side), whether or not an event has told the handler yet. */
  get destroyed(): boolean {
    return this.stream.destroyed;
  }

  write(message: Response): boolean {
    if (this.statusSent || this.stream.closed) return false;
    this.sendHeaders();
    return this.stream.write(frame(this.serialize(message)));
  }

  /** Ends the call with status OK. */
  end(): void {
    this.sendStatus({ code: Status.OK, details: 'OK' });
  }

  sendStatus(status: StatusObject): void {
    if (this.statusSent) return;
    this.statusSent = true;
    if (this.stream.closed || this.stream.destroyed) return;
    const code = String(status.code);
    const message = encodeURI(status.details ?? '');
    if (!this.headersSent) {
      // Trailers-only: status in the one HEADERS frame.
      this.headersSent = true;
      this.stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': code, 'grpc-message': message },
        END_STREAM,
      );
      return;
    }
    this.pendingStatus = status;
    this.stream.end();
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, WAIT_FOR_TRAILERS);
    this.stream.once('wantTrailers', () => {
      const status = this.pendingStatus ?? { code: Status.OK, details: 'OK' };
      this.stream.sendTrailers({ 'grpc-status': String(status.code), 'grpc-message': encodeURI(status.details ?? '') });
    });
  }

  private onCancelled(): void {
    if (this.cancelled || this.statusSent) return;
    this.cancelled = true;
    this.emit('cancelled');
  }

  /**
   * Reassembles gRPC frames from DATA chunks; each complete message is decoded and emitted as 'data'. A large message
   * (a request body Envoy buffered: megabytes in 16 KiB frames) is kept as a list of chunks and joined once, not
   * re-copied on every chunk.
   */
  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    while (this.bufferedBytes >= 5) {
      if (this.frameBytes === null) {
        if (this.chunks[0]!.length < 5) this.chunks = [Buffer.concat(this.chunks, this.bufferedBytes)];
        const head = this.chunks[0]!;
        if (head[0] !== 0) return this.refuse(Status.UNIMPLEMENTED, 'compressed messages are not supported');
        const length = head.readUInt32BE(1);
        if (length > this.maxMessageBytes) return this.refuse(Status.RESOURCE_EXHAUSTED, `message of ${length} bytes exceeds ${this.maxMessageBytes}`);
        this.frameBytes = 5 + length;
      }
      if (this.bufferedBytes < this.frameBytes) return;
      const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bufferedBytes);
      const bytes = joined.subarray(5, this.frameBytes);
      const rest = joined.subarray(this.frameBytes);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.bufferedBytes = rest.length;
      this.frameBytes = null;
      let message: Request;
      try {
        message = this.deserialize(bytes) as Request;
      } catch (err) {
        return this.refuse(Status.INTERNAL, `cannot decode the request message: ${(err as Error).message}`);
      }
      if (this.statusSent) return;
      this.emit('data', message);
    }
  }

  private refuse(code: number, details: string): void {
    this.chunks = [];
    this.bufferedBytes = 0;
    this.frameBytes = null;
    this.emit('error', { code, details });
    this.stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }
}

function statusOf(err: unknown): StatusObject {
  if (err && typeof err === 'object' && typeof (err as StatusObject).code === 'number') {
    const { code, details } = err as StatusObject;
    return { code, details: details ?? '' };
  }
  return { code: Status.UNKNOWN, details: err instanceof Error ? err.message : 'unknown error' };
}

function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

type Kind = 'unary' | 'serverStream' | 'bidi';

interface Method {
  readonly kind: Kind;
  readonly serialize: Serialize;
  readonly deserialize: Deserialize;
  readonly handler: ServiceImplementation[string];
}

export class GrpcServer {
  private readonly methods = new Map<string, Method>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly maxMessageBytes: number;
  private readonly server: http2.Http2Server | http2.Http2SecureServer;
  private readonly authorize: ((metadata: Metadata) => boolean) | null;

  constructor(options: GrpcServerOptions = {}) {
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.authorize = options.authorize ?? null;
    // As grpc-js: Node's per-session memory cap (10 MB) refuses streams under a backlog; lift it (streams are bounded
    // by Envoy's circuit breaker and message timeout instead).
    const common: http2.ServerOptions = { maxSessionMemory: Number.MAX_SAFE_INTEGER };
    this.server = options.tls ? http2.createSecureServer({ ...common, ...options.tls, allowHTTP1: false }) : http2.createServer(common);
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      session.on('error', () => undefined);
      session.once('close', () => this.sessions.delete(session));
    });
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
  }

  /** Registers every method of `service` with its handler in `implementation` (grpc-js's Server#addService). */
  addService(service: ServiceDefinition, implementation: ServiceImplementation): void {
    for (const [name, definition] of Object.entries(service)) {
      const handler = implementation[name];
      if (!handler) throw new Error(`keypool: no handler for ${definition.path}`);
      if (definition.requestStream && !definition.responseStream) throw new Error(`keypool: client-streaming ${definition.path} is not supported`);
      const kind: Kind = definition.requestStream ? 'bidi' : definition.responseStream ? 'serverStream' : 'unary';
      this.methods.set(definition.path, {
        kind,
        serialize: definition.responseSerialize as Serialize,
        deserialize: definition.requestDeserialize as Deserialize,
        handler,
      });
    }
  }

  /** Listens on `host:port` (`[::1]:0` style for IPv6; port 0 = any free one); resolves with the bound port. */
  listen(hostPort: string): Promise<number> {
    const colon = hostPort.lastIndexOf(':');
    const host = hostPort.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const port = Number(hostPort.slice(colon + 1));
    if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65_535) return Promise.reject(new Error(`keypool: cannot listen on ${hostPort}`));
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /** New certificates for connections accepted from now on (a TLS listener only; a no-op on plaintext). */
  setSecureContext(context: tls.SecureContextOptions): void {
    if ('setSecureContext' in this.server) this.server.setSecureContext(context);
  }

  /** Stops accepting connections and streams (GOAWAY); `done` runs once every open stream has ended. */
  tryShutdown(done: () => void): void {
    this.server.close(() => done());
    for (const session of this.sessions) session.close();
  }

  /** Cuts every connection now. */
  forceShutdown(): void {
    this.server.close();
    for (const session of this.sessions) session.destroy();
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const method = this.methods.get(headers[':path'] ?? '');
    const contentType = headers['content-type'] ?? '';
    if (headers[':method'] !== 'POST' || !contentType.startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, END_STREAM);
      return;
    }
    if (!method) {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(Status.UNIMPLEMENTED), 'grpc-message': encodeURI(`unknown method ${headers[':path']}`) },
        END_STREAM,
      );
      return;
    }
    const metadata = new Metadata(headers);
    if (this.authorize !== null && !this.authorize(metadata)) {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(Status.UNAUTHENTICATED), 'grpc-message': encodeURI('keypool: missing or invalid gRPC token') },
        END_STREAM,
      );
      return;
    }
    const call = new GrpcServerCall(stream, metadata, method.serialize, method.deserialize, this.maxMessageBytes);
    if (method.kind === 'bidi') {
      method.handler(call);
      return;
    }
    // Unary and server-streaming: the handler runs once the single request message has arrived.
    let received = false;
    call.on('data', (message: unknown) => {
      if (received) {
        call.sendStatus({ code: Status.UNIMPLEMENTED, details: 'more than one request message' });
        return;
      }
      received = true;
      call.request = message;
    });
    call.once('end', () => {
      if (!received) {
        call.sendStatus({ code: Status.UNIMPLEMENTED, details: 'no request message' });
        return;
      }
      if (method.kind === 'serverStream') {
        method.handler(call);
        return;
      }
      method.handler(call, (err: StatusObject | null, value?: unknown) => {
        if (err) call.sendStatus(err);
        else {
          call.write(value);
          call.end();
        }
      });
    });
  }
}
