// Client side of the replica tests: one ext_proc stream per request, exactly as Envoy drives it (request_headers,
// then response_headers once the "upstream" answered), with the answer reduced to what the tests assert on.
import {
  requestHeadersMsg,
  responseBodyMsg,
  responseHeadersMsg,
  setHeadersOf,
  type ExtProcClient,
  type Msg,
  type ProcessCall,
} from '../envoy/ext-proc-client.js';

/** HttpStatus enum names as the proto loader (enums: String) decodes them. */
const STATUS_BY_NAME: Readonly<Record<string, number>> = {
  OK: 200,
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  TooManyRequests: 429,
  InternalServerError: 500,
  ServiceUnavailable: 503,
};

/** Headers a pooled upstream key may arrive in, by provider auth style. */
const UPSTREAM_AUTH_HEADERS = ['authorization', 'x-api-key', 'api-key', 'x-goog-api-key'] as const;

export interface RequestSpec {
  /** x-keypool-provider gRPC metadata (the route's pool). */
  readonly provider: string;
  /** The client's system API key (sent as Authorization: Bearer). */
  readonly clientKey: string;
  /** Envoy's source.address attribute. Default 127.0.0.1:50000. */
  readonly source?: string;
  /** Longest wait for keypool's answer to request_headers. Default 5 s. */
  readonly timeoutMs?: number;
  /** The request has no body (request_headers end_of_stream): keypool decides on the headers alone. Default false. */
  readonly endOfStream?: boolean;
}

/** An admitted request: the test plays the upstream and then answers through respond(). */
export class Exchange {
  private settled = false;

  constructor(
    private readonly call: ProcessCall,
    /** The pooled upstream key keypool injected. */
    readonly upstreamKey: string,
  ) {}

  /** Envoy's response_headers with the upstream's status and headers; resolves when keypool continued and the stream closed. */
  async respond(status: number, headers: Record<string, string> = {}): Promise<void> {
    const closed = await this.respondUntilAnswered(status, headers);
    await closed;
  }

  /**
   * Like respond(), but resolves the instant keypool's answer arrives (when Envoy would pass the response on), with
   * a promise of the stream's close.
   */
  async respondUntilAnswered(status: number, headers: Record<string, string> = {}): Promise<Promise<void>> {
    if (this.settled) return Promise.resolve();
    this.settled = true;
    this.call.send(responseHeadersMsg(status, headers));
    let answer = await this.call.next(5_000);
    if (!('response_headers' in answer)) throw new Error(`expected a response_headers answer, got ${JSON.stringify(answer)}`);
    if ((answer['mode_override'] as { response_body_mode?: string } | undefined)?.response_body_mode === 'BUFFERED_PARTIAL') {
      // keypool asked for the error body (an error status): Envoy sends it and passes the response on at the answer.
      this.call.send(responseBodyMsg('{"error":{"message":"rate limited","code":"rate_limit_exceeded"}}'));
      answer = await this.call.next(5_000);
      if (!('response_body' in answer)) throw new Error(`expected a response_body answer, got ${JSON.stringify(answer)}`);
    }
    this.call.halfClose();
    const closed = withTimeout(this.call.status, 5_000, 'stream close').then(() => undefined);
    closed.catch(() => undefined);
    return closed;
  }

  /** Client reset (or a dead replica): cancel the stream without an answer. */
  abandon(): void {
    if (this.settled) return;
    this.settled = true;
    this.call.cancel();
  }
}

export type Answer =
  | { readonly kind: 'allow'; readonly upstreamKey: string; readonly latencyMs: number; readonly exchange: Exchange }
  | {
      readonly kind: 'deny';
      readonly status: number;
      readonly code: string;
      readonly retryAfterSec: number | null;
      readonly latencyMs: number;
    }
  | { readonly kind: 'error'; readonly message: string; readonly latencyMs: number };

/** Opens a stream, sends request_headers and returns keypool's decision. Never throws. */
export async function decide(client: ExtProcClient, spec: RequestSpec): Promise<Answer> {
  const startedAt = performance.now();
  const call = client.process({ 'x-keypool-provider': spec.provider });
  const headersMsg = requestHeadersMsg(
    { ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'api.example', authorization: `Bearer ${spec.clientKey}` },
    spec.source ?? '127.0.0.1:50000',
  );
  if (spec.endOfStream === true) (headersMsg['request_headers'] as { end_of_stream: boolean }).end_of_stream = true;
  call.send(headersMsg);
  let msg: Msg;
  try {
    msg = await call.next(spec.timeoutMs ?? 5_000);
  } catch (error) {
    call.cancel();
    return { kind: 'error', message: String(error), latencyMs: performance.now() - startedAt };
  }
  const latencyMs = performance.now() - startedAt;
  if ('request_headers' in msg) {
    const set = setHeadersOf(msg);
    const header = UPSTREAM_AUTH_HEADERS.find((name) => set[name] !== undefined);
    const raw = header === undefined ? '' : (set[header] ?? '');
    const upstreamKey = raw.startsWith('Bearer ') ? raw.slice('Bearer '.length) : raw;
    return { kind: 'allow', upstreamKey, latencyMs, exchange: new Exchange(call, upstreamKey) };
  }
  const immediate = msg['immediate_response'] as
    | {
        status?: { code?: string | number };
        body?: Buffer;
        headers?: { set_headers?: Array<{ header: { key: string; raw_value?: Buffer } }> };
      }
    | undefined;
  if (immediate === undefined) {
    call.cancel();
    return { kind: 'error', message: `unexpected answer ${JSON.stringify(msg)}`, latencyMs };
  }
  // Envoy half-closes after an immediate response; the stream then ends cleanly.
  call.halfClose();
  void call.status;
  const code = immediate.status?.code;
  const status = typeof code === 'number' ? code : (STATUS_BY_NAME[code ?? ''] ?? Number(code));
  const headers: Record<string, string> = {};
  for (const o of immediate.headers?.set_headers ?? []) headers[o.header.key] = o.header.raw_value?.toString() ?? '';
  let errorCode: string;
  try {
    errorCode = String((JSON.parse(immediate.body?.toString() ?? '{}') as { error?: { code?: string } }).error?.code ?? '');
  } catch {
    errorCode = '<unparsable body>';
  }
  const retryAfter = headers['retry-after'];
  return { kind: 'deny', status, code: errorCode, retryAfterSec: retryAfter === undefined ? null : Number(retryAfter), latencyMs };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Uniform integer in [min, max]. */
export function between(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

/** Short human summary of an answer for assertion messages. */
export function describeAnswer(answer: Answer): string {
  if (answer.kind === 'allow') return `allow(${answer.upstreamKey.slice(-6)})`;
  if (answer.kind === 'deny') return `deny ${answer.status} ${answer.code} retry-after=${answer.retryAfterSec}`;
  return `error ${answer.message}`;
}

/**
 * `total` requests spread over `clients` (one per replica), `perClient` in flight on each, request i shaped by
 * `requestOf(i)`; an allowed request is answered 200 at once. Answers in completion order.
 */
export async function fireAcross(clients: readonly ExtProcClient[], total: number, perClient: number, requestOf: (i: number) => RequestSpec): Promise<Answer[]> {
  const answers: Answer[] = [];
  let next = 0;
  const worker = async (client: ExtProcClient): Promise<void> => {
    while (next < total) {
      const answer = await decide(client, requestOf(next++));
      if (answer.kind === 'allow') await answer.exchange.respond(200, { 'content-type': 'application/json' });
      answers.push(answer);
    }
  };
  await Promise.all(clients.flatMap((client) => Array.from({ length: perClient }, () => worker(client))));
  return answers;
}

/** Answers counted by outcome: `allow`, the deny code, or `error: ...` for anything else. */
export function tallyAnswers(answers: readonly Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) {
    const label = a.kind === 'allow' ? 'allow' : a.kind === 'deny' ? a.code : `error: ${describeAnswer(a)}`;
    out[label] = (out[label] ?? 0) + 1;
  }
  return out;
}
