// A lean ext_proc client that sends what Envoy 1.40 sends: one HTTP/2 gRPC stream per proxied request on one
// connection per Envoy worker, `x-keypool-provider` as gRPC metadata, request_headers (raw_value, a unique x-request-id, the
// `source.address` attribute) then, once answered, response_headers with an OpenAI-style upstream answer, then the
// end of the stream exactly as the shipped envoy/envoy.yaml makes Envoy end it (see streamEndFromShippedConfig):
//   graceful  (runtime flag ext_proc_graceful_grpc_close on, as shipped) END_STREAM, then wait for the server's
//             trailers; Envoy does not hold the proxied request for them, so neither does the latency measured here
//   reset     (Envoy's default) END_STREAM immediately followed by RST_STREAM(NO_ERROR), and a fresh connection after
//             the keypool cluster's max_requests_per_connection streams, as Envoy's connection pool does
// The messages are encoded once with the service's own serializer (the vendored protos) and copied per request, and
// answers are only framed, not decoded, so the client spends far less CPU per request than the server.
import { readFileSync } from 'node:fs';
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadProtos } from '../../src/adapters/envoy/protos.js';
import type { Fire } from './load.js';
import { REPO_ROOT } from './report.js';

export type StreamEnd = 'graceful' | 'reset';

export interface StreamEndStyle {
  readonly end: StreamEnd;
  /** Streams per connection before a new one is opened (Infinity: no budget). */
  readonly maxStreamsPerConnection: number;
}

const GRACEFUL_CLOSE_FLAG = 'envoy.reloadable_features.ext_proc_graceful_grpc_close';
/** Streams before the connection budget at which the next connection is opened, so it is connected when needed. */
const SPARE_AHEAD = 128;

/**
 * How Envoy ends keypool's streams with the shipped envoy/envoy.yaml: graceful when its runtime layers turn
 * ext_proc_graceful_grpc_close on, else a reset; and the keypool cluster's max_requests_per_connection.
 * BENCH_STREAM_END=reset|graceful overrides the end (e.g. to measure what a config without the flag costs).
 */
export function streamEndFromShippedConfig(file = join(REPO_ROOT, 'envoy', 'envoy.yaml')): StreamEndStyle {
  const config = parse(readFileSync(file, 'utf8')) as Record<string, any>;
  const layers = (config['layered_runtime']?.['layers'] ?? []) as Array<Record<string, any>>;
  const graceful = layers.some((l) => l['static_layer']?.[GRACEFUL_CLOSE_FLAG] === true);
  const keypool = (config['static_resources']['clusters'] as Array<Record<string, any>>).find((c) => c['name'] === 'keypool');
  const options = keypool?.['typed_extension_protocol_options']?.['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
  const budget = Number(options?.['common_http_protocol_options']?.['max_requests_per_connection'] ?? Infinity);
  const override = process.env['BENCH_STREAM_END'];
  const end: StreamEnd = override === 'reset' || override === 'graceful' ? override : graceful ? 'graceful' : 'reset';
  return { end, maxStreamsPerConnection: budget > 0 ? budget : Infinity };
}

const PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
const REQUEST_ID_PLACEHOLDER = '00000000-0000-4000-8000-000000000000';
/** First byte of a ProcessingResponse: field 1 (request_headers) or field 7 (immediate_response), wire type 2. */
const TAG_REQUEST_HEADERS = 0x0a;
const TAG_IMMEDIATE_RESPONSE = 0x3a;

interface MethodCodec {
  requestSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

function codec(): MethodCodec {
  return loadProtos().extProcService['Process'] as unknown as MethodCodec;
}

function headerMap(headers: Record<string, string>) {
  return { headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) };
}

function grpcFrame(message: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

/** The request headers Envoy forwards for `POST /openai/v1/chat/completions` from an OpenAI SDK. */
export function envoyRequestHeaders(clientKey: string, requestId = REQUEST_ID_PLACEHOLDER): Record<string, string> {
  return {
    ':authority': '127.0.0.1:10000',
    ':path': '/openai/v1/chat/completions',
    ':method': 'POST',
    ':scheme': 'http',
    'content-type': 'application/json',
    accept: 'application/json',
    'user-agent': 'OpenAI/Python 1.51.0',
    'content-length': '66',
    authorization: `Bearer ${clientKey}`,
    'x-forwarded-for': '127.0.0.1',
    'x-forwarded-proto': 'http',
    'x-request-id': requestId,
  };
}

/** An OpenAI answer's headers as Envoy hands them to response_headers processing. */
export const UPSTREAM_RESPONSE_HEADERS: Record<string, string> = {
  ':status': '200',
  'content-type': 'application/json',
  'content-length': '152',
  date: 'Sun, 22 Nov 2026 10:00:00 GMT',
  'openai-processing-ms': '312',
  'openai-version': '2020-10-01',
  'x-ratelimit-limit-requests': '10000',
  'x-ratelimit-limit-tokens': '2000000',
  'x-ratelimit-remaining-requests': '9999',
  'x-ratelimit-remaining-tokens': '1999950',
  'x-ratelimit-reset-requests': '6ms',
  'x-ratelimit-reset-tokens': '1ms',
  'x-request-id': 'req_0123456789abcdef0123456789abcdef',
  'x-envoy-upstream-service-time': '314',
};

export interface ExtProcLoadCounts {
  allowed: number;
  denied: number;
  errors: number;
}

export class ExtProcLoad {
  readonly counts: ExtProcLoadCounts = { allowed: 0, denied: 0, errors: 0 };
  /** One HTTP/2 connection per Envoy worker; streams are spread over them round-robin. */
  private readonly sessions: Array<ClientHttp2Session | null>;
  /** Streams opened on each session so far (for the connection budget). */
  private readonly streamsOn: number[];
  private next = 0;
  private readonly requestTemplate: Buffer;
  private readonly requestIdOffset: number;
  private readonly responseFrame: Buffer;
  private readonly streamHeaders: Record<string, string>;
  private sequence = 0;

  constructor(
    private readonly port: number,
    clientKey: string,
    connections = 1,
    provider = 'openai',
    readonly style: StreamEndStyle = streamEndFromShippedConfig(),
  ) {
    this.sessions = new Array<ClientHttp2Session | null>(connections).fill(null);
    this.streamsOn = new Array<number>(connections).fill(0);
    const { requestSerialize } = codec();
    const request = requestSerialize({
      request_headers: { headers: headerMap(envoyRequestHeaders(clientKey)), end_of_stream: false },
      attributes: { 'envoy.filters.http.ext_proc': { fields: { 'source.address': { stringValue: '127.0.0.1:43122' } } } },
    });
    this.requestTemplate = grpcFrame(request);
    this.requestIdOffset = this.requestTemplate.indexOf(REQUEST_ID_PLACEHOLDER, 0, 'latin1');
    if (this.requestIdOffset < 0) throw new Error('bench: x-request-id placeholder not found in the encoded request');
    this.responseFrame = grpcFrame(requestSerialize({ response_headers: { headers: headerMap(UPSTREAM_RESPONSE_HEADERS), end_of_stream: false } }));
    this.streamHeaders = {
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: PATH,
      [constants.HTTP2_HEADER_SCHEME]: 'http',
      [constants.HTTP2_HEADER_AUTHORITY]: 'keypool',
      'content-type': 'application/grpc',
      te: 'trailers',
      'x-keypool-provider': provider,
    };
  }

  async connect(): Promise<void> {
    await Promise.all(
      this.sessions.map(
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const session = this.openSession(i);
            session.once('error', reject);
            session.once('connect', () => {
              session.off('error', reject);
              resolve();
            });
          }),
      ),
    );
  }

  /** Sessions the server (or a limit) closed during the run; each is replaced by a new connection. */
  sessionsLost = 0;

  private openSession(slot: number): ClientHttp2Session {
    const session = this.newSession();
    this.install(slot, session);
    return session;
  }

  private newSession(): ClientHttp2Session {
    // Far above Node's 10 MB default: an overloaded server leaves thousands of streams open, and the bench must
    // measure that backlog, not have its own session refuse streams.
    const session = connect(`http://127.0.0.1:${this.port}`, { maxSessionMemory: 1_000, peerMaxConcurrentStreams: 1_000_000 });
    session.on('error', () => undefined);
    return session;
  }

  private install(slot: number, session: ClientHttp2Session): void {
    this.streamsOn[slot] = 0;
    session.once('close', () => {
      if (this.sessions[slot] === session) {
        this.sessions[slot] = null;
        this.sessionsLost++;
      }
    });
    this.sessions[slot] = session;
  }

  /** Sessions this client retired after max_requests_per_connection streams, as Envoy's connection pool does. */
  sessionsRotated = 0;
  /** Per slot: the connection that takes over at the budget, opened ahead so its SETTINGS exchange is done by then. */
  private readonly spares = new Map<number, { session: ClientHttp2Session; ready: boolean }>();

  private liveSession(): ClientHttp2Session {
    const slot = this.next;
    this.next = (slot + 1) % this.sessions.length;
    let session = this.sessions[slot];
    const budget = this.style.maxStreamsPerConnection;
    if (session && this.streamsOn[slot]! >= budget - SPARE_AHEAD && !this.spares.has(slot)) {
      const spare = { session: this.newSession(), ready: false };
      spare.session.once('remoteSettings', () => (spare.ready = true));
      this.spares.set(slot, spare);
    }
    const spare = this.spares.get(slot);
    if (session && this.streamsOn[slot]! >= budget && spare?.ready) {
      // Envoy drains the connection: no new streams on it, the open ones finish. (Until the spare is ready the old
      // one takes a few streams past its budget, where Envoy would queue them: fewer than 1,000 either way.)
      this.spares.delete(slot);
      this.retire(session, this.lastStream[slot]);
      this.install(slot, spare.session);
      this.sessionsRotated++;
      session = spare.session;
    }
    if (!session || session.destroyed || session.closed) session = this.openSession(slot);
    this.streamsOn[slot]!++;
    return session;
  }

  /** The latest stream opened on each slot's connection (see retire()). */
  private readonly lastStream: Array<ClientHttp2Stream | undefined> = [];

  /**
   * Closes a connection at its budget once its last stream is over. Closed earlier, Node's client sends its GOAWAY
   * ahead of the HEADERS of streams still queued on that connection and refuses them itself (REFUSED_STREAM): a
   * client artefact (measured) that Envoy's pool does not have.
   */
  private retire(session: ClientHttp2Session, last: ClientHttp2Stream | undefined): void {
    if (last && !last.closed) last.once('close', () => session.close());
    else session.close();
  }

  private request(): ClientHttp2Stream {
    const slot = this.next;
    const stream = this.liveSession().request(this.streamHeaders, { endStream: false });
    this.lastStream[slot] = stream;
    return stream;
  }

  /** Ends a stream whose last answer has arrived, as Envoy does (see the file comment). */
  private finish(stream: ClientHttp2Stream): void {
    stream.end();
    if (this.style.end === 'reset') stream.close(constants.NGHTTP2_NO_ERROR);
  }

  private requestFrame(): Buffer {
    const frame = Buffer.from(this.requestTemplate);
    const id = (this.sequence++).toString(16).padStart(8, '0');
    frame.write(id, this.requestIdOffset, 'latin1');
    return frame;
  }

  /** One proxied request: resolves done(true) when the response_headers answer arrives. */
  readonly fire: Fire = (done) => {
    const stream = this.request();
    let pending: Buffer | null = null;
    let answers = 0;
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      if (!ok) this.counts.errors++;
      done(ok);
    };
    stream.on('data', (chunk: Buffer) => {
      pending = pending ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        if (pending.length < 5 + length) break;
        const tag = length > 0 ? pending[5] : -1;
        pending = pending.subarray(5 + length);
        answers++;
        if (answers === 1) {
          if (tag === TAG_REQUEST_HEADERS) {
            this.counts.allowed++;
            stream.write(this.responseFrame);
          } else {
            if (tag === TAG_IMMEDIATE_RESPONSE) this.counts.denied++;
            this.finish(stream);
            settle(false);
          }
        } else if (answers === 2) {
          this.finish(stream);
          settle(true);
        }
      }
    });
    stream.on('error', () => undefined);
    stream.on('close', () => settle(false));
    stream.write(this.requestFrame());
  };

  /** One request, both answers decoded (to check the setup: an allow with a pooled credential). */
  async probe(): Promise<unknown[]> {
    const { responseDeserialize } = codec();
    const stream = this.request();
    const messages: unknown[] = [];
    let pending = Buffer.alloc(0);
    await new Promise<void>((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
          const length = pending.readUInt32BE(1);
          const message = responseDeserialize(pending.subarray(5, 5 + length)) as Record<string, unknown>;
          messages.push(message);
          pending = pending.subarray(5 + length);
          if (messages.length === 1 && 'request_headers' in message) stream.write(this.responseFrame);
          else this.finish(stream);
        }
      });
      stream.on('error', () => undefined);
      stream.on('close', () => resolve());
      stream.write(this.requestFrame());
    });
    return messages;
  }

  close(): void {
    for (const spare of this.spares.values()) spare.session.close();
    this.spares.clear();
    const sessions = [...this.sessions];
    this.sessions.fill(null);
    for (const session of sessions) session?.close();
  }
}
