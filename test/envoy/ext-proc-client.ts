// A grpc-js client that speaks to keypool's ext_proc server the way Envoy does: one bidi Process
// stream per request, request_headers first, then response_headers.
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/adapters/envoy/protos.js';

export type Msg = Record<string, unknown>;

export interface ProcessCall {
  send(msg: Msg): void;
  /** Next message from the server (rejects when the stream ends first). */
  next(timeoutMs?: number): Promise<Msg>;
  halfClose(): void;
  cancel(): void;
  /** Final gRPC status of the stream. */
  readonly status: Promise<grpc.StatusObject>;
}

interface RawClient extends grpc.Client {
  Process(metadata: grpc.Metadata): grpc.ClientDuplexStream<Msg, Msg>;
  Check(req: Msg, metadata: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Msg) => void): void;
  Watch(req: Msg): grpc.ClientReadableStream<Msg>;
}

export interface ExtProcClientOptions {
  /** Channel credentials (TLS, client certificate); default plaintext. */
  readonly credentials?: grpc.ChannelCredentials;
  /** gRPC channel options (e.g. grpc.ssl_target_name_override). */
  readonly channelOptions?: grpc.ChannelOptions;
  /** Metadata sent on every call, Health included (e.g. the channel token). */
  readonly callMetadata?: Record<string, string>;
}

export class ExtProcClient {
  private readonly extProc: RawClient;
  private readonly health: RawClient;
  private readonly callMetadata: Record<string, string>;

  constructor(address: string, options: ExtProcClientOptions = {}) {
    const { extProcService, healthService } = loadProtos();
    const ExtProc = grpc.makeClientConstructor(extProcService, 'ExternalProcessor') as unknown as new (
      a: string,
      c: grpc.ChannelCredentials,
      o?: grpc.ChannelOptions,
    ) => RawClient;
    const Health = grpc.makeClientConstructor(healthService, 'Health') as unknown as new (
      a: string,
      c: grpc.ChannelCredentials,
      o?: grpc.ChannelOptions,
    ) => RawClient;
    const credentials = options.credentials ?? grpc.credentials.createInsecure();
    this.extProc = new ExtProc(address, credentials, options.channelOptions);
    this.health = new Health(address, credentials, options.channelOptions);
    this.callMetadata = options.callMetadata ?? {};
  }

  private metadata(extra: Record<string, string>): grpc.Metadata {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries({ ...this.callMetadata, ...extra })) md.set(k, v);
    return md;
  }

  process(metadata: Record<string, string> = { 'x-keypool-provider': 'openai' }): ProcessCall {
    const md = this.metadata(metadata);
    const call = this.extProc.Process(md);
    const inbox: Msg[] = [];
    const waiters: Array<{ resolve: (m: Msg) => void; reject: (e: Error) => void }> = [];
    let ended = false;
    call.on('data', (m: Msg) => {
      const w = waiters.shift();
      if (w) w.resolve(m);
      else inbox.push(m);
    });
    const status = new Promise<grpc.StatusObject>((resolve) => {
      call.on('status', (s: grpc.StatusObject) => {
        ended = true;
        for (const w of waiters.splice(0)) w.reject(new Error(`stream ended: ${s.code} ${s.details}`));
        resolve(s);
      });
    });
    call.on('error', () => undefined); // surfaced through `status`
    return {
      send: (m) => call.write(m),
      next: (timeoutMs = 5_000) => {
        const queued = inbox.shift();
        if (queued) return Promise.resolve(queued);
        if (ended) return Promise.reject(new Error('stream already ended'));
        return new Promise<Msg>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('timed out waiting for a message')), timeoutMs);
          waiters.push({
            resolve: (m) => {
              clearTimeout(timer);
              resolve(m);
            },
            reject: (e) => {
              clearTimeout(timer);
              reject(e);
            },
          });
        });
      },
      halfClose: () => call.end(),
      cancel: () => call.cancel(),
      status,
    };
  }

  check(service = ''): Promise<string> {
    return new Promise((resolve, reject) => {
      this.health.Check({ service }, this.metadata({}), { deadline: Date.now() + 5_000 }, (err, res) =>
        err ? reject(err) : resolve(String(res?.['status'])),
      );
    });
  }

  watch(service = ''): grpc.ClientReadableStream<Msg> {
    return this.health.Watch({ service });
  }

  close(): void {
    this.extProc.close();
    this.health.close();
  }
}

/** A request_headers message as Envoy 1.40 sends it (raw_value, attributes with source.address). */
export function requestHeadersMsg(headers: Record<string, string>, sourceAddress: string | null = '127.0.0.1:50000'): Msg {
  return {
    request_headers: {
      headers: { headers: Object.entries(headers).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) },
      end_of_stream: false,
    },
    ...(sourceAddress === null
      ? {}
      : {
          attributes: {
            'envoy.filters.http.ext_proc': { fields: { 'source.address': { stringValue: sourceAddress } } },
          },
        }),
  };
}

export function responseHeadersMsg(status: number, headers: Record<string, string> = {}, endOfStream = false): Msg {
  const all = { ':status': String(status), ...headers };
  return {
    response_headers: {
      headers: { headers: Object.entries(all).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) },
      end_of_stream: endOfStream,
    },
  };
}

/** A response_body message (what Envoy sends after keypool asked for an error body). */
export function responseBodyMsg(body: string, endOfStream = true): Msg {
  return { response_body: { body: Buffer.from(body), end_of_stream: endOfStream } };
}

/** Header mutation of a request_headers answer as {name: value}. */
export function setHeadersOf(msg: Msg): Record<string, string> {
  const rh = msg['request_headers'] as
    | { response?: { header_mutation?: { set_headers?: Array<{ header: { key: string; raw_value?: Buffer; value?: string } }> } } }
    | undefined;
  const out: Record<string, string> = {};
  for (const o of rh?.response?.header_mutation?.set_headers ?? []) out[o.header.key] = o.header.raw_value?.toString() ?? '';
  return out;
}

export async function waitFor(predicate: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Polls an async condition every 50 ms until it holds, or fails after timeoutMs. */
export async function waitForAsync(predicate: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
