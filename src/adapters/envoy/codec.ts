// Pure translation between ext_proc messages and the core's vocabulary. No gRPC objects, no I/O.
// Envoy facts this file encodes (see DESIGN.md "Protocol facts that bite"):
// - header values arrive in raw_value (bytes) since Envoy 1.27; `value` is the legacy fallback;
// - a mutation must set ONLY raw_value (both -> rejected, value only -> empty header);
// - ext_proc honours the deprecated `append` BoolValue, not append_action: send append=false;
// - a CR/LF/NUL anywhere rejects the whole mutation, so refuse to build one;
// - an ImmediateResponse without a status is sent as 200: always set it.
import { deny } from '../../core/errors.js';
import type { Decision, Deny, HeaderBag, HeaderPairs, RequestView } from '../../core/types.js';
import type { ResponseOrigin } from '../../ports.js';
import type {
  HeaderMapMsg,
  HeaderMutationMsg,
  HeaderValueOptionMsg,
  HttpHeadersMsg,
  OverrideMessageTimeoutMsg,
  ProcessingModeMsg,
  ProcessingRequestMsg,
  ProcessingResponseMsg,
  StructMsg,
} from './messages.js';

/** Key of ext_proc's own entry in ProcessingRequest.attributes. */
export const EXT_PROC_ATTRIBUTES_KEY = 'envoy.filters.http.ext_proc';
export const SOURCE_ADDRESS_ATTRIBUTE = 'source.address';
/** Envoy's response code details: `via_upstream` when the upstream produced the response, else why Envoy did. */
export const RESPONSE_CODE_DETAILS_ATTRIBUTE = 'response.code_details';
const VIA_UPSTREAM = 'via_upstream';

/** Thrown when a decision cannot be expressed safely on the wire (a bug upstream of the codec). */
export class UnsafeHeaderError extends Error {
  constructor(what: string) {
    super(`keypool: refusing to emit header ${what}`);
    this.name = 'UnsafeHeaderError';
  }
}

// ---------------------------------------------------------------------------------------------
// Envoy -> core
// ---------------------------------------------------------------------------------------------

type MutableHeaderBag = Record<string, string | string[]>;

/**
 * The object a header bag is: it inherits nothing (its prototype is an empty object with a null prototype), so a
 * header literally named `__proto__`, `constructor` or `toString` stays data and a missing one reads undefined.
 * Built with `new` rather than Object.create(null): V8 then gives bags in-object property slots and shared hidden
 * classes (Envoy sends the same headers in the same order), where Object.create(null) objects start as hash tables.
 */
const HeaderBagObject = function HeaderBagObject(): void {} as unknown as new () => MutableHeaderBag;
HeaderBagObject.prototype = Object.create(null) as object;

/** Lower-case names; raw_value decoded as UTF-8, else value; repeated names collected in order. */
export function headerBagFrom(map: HeaderMapMsg | undefined): HeaderBag {
  const bag = new HeaderBagObject();
  const headers = map?.headers;
  if (!headers) return bag;
  for (let i = 0; i < headers.length; i += 1) {
    const h = headers[i]!;
    if (!h.key) continue;
    const name = h.key.toLowerCase();
    const raw = h.raw_value;
    const value = raw !== undefined && raw !== null && raw.length > 0 ? utf8(raw) : (h.value ?? '');
    const prev = bag[name];
    if (prev === undefined) bag[name] = value;
    else if (typeof prev === 'string') bag[name] = [prev, value];
    else prev.push(value);
  }
  return bag;
}

/**
 * Buffer#utf8Slice: what toString('utf8') ends in, without its argument handling (26 calls per proxied request).
 * Not in Node's typings (protobufjs decodes strings with it too); toString is the fallback should it ever go.
 */
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string }).utf8Slice;

/**
 * Decodes bytes without copying them first: proto-loader hands raw_value over as a Buffer view into the received
 * message, and Buffer.from(view) would copy every header value of every message (measured by bench:extproc's
 * allocation profile: the largest per-request allocation site, ~1 us of the ~3 us a 14-header bag took).
 */
function utf8(bytes: Uint8Array): string {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return utf8Slice !== undefined ? utf8Slice.call(buffer, 0, buffer.length) : buffer.toString('utf8');
}

/**
 * Envoy's trusted client address (`1.2.3.4:5678`, `[::1]:443`) from the `source.address`
 * attribute; null when Envoy did not send it (request_attributes not configured).
 * Envoy >= 1.27 puts attributes on ProcessingRequest (field 9); older ones on HttpHeaders (field 2).
 */
export function clientAddressFrom(request: ProcessingRequestMsg, headers: HttpHeadersMsg | undefined): string | null {
  return (
    sourceAddressIn(request.attributes?.[EXT_PROC_ATTRIBUTES_KEY]) ??
    sourceAddressIn(headers?.attributes?.[EXT_PROC_ATTRIBUTES_KEY]) ??
    null
  );
}

function sourceAddressIn(struct: StructMsg | undefined): string | undefined {
  return stringAttribute(struct, SOURCE_ADDRESS_ATTRIBUTE);
}

function stringAttribute(struct: StructMsg | undefined, name: string): string | undefined {
  const value = struct?.fields?.[name]?.stringValue;
  return value ? value : undefined;
}

/**
 * Who produced the response of a response_headers message, from the `response.code_details` attribute (requested
 * with response_attributes). Verified against Envoy 1.40: the provider's answer says `via_upstream`; Envoy's own reply
 * to a refused connection says `upstream_reset_before_response_started{remote_connection_failure|...}` (and, unlike
 * what one might hope, `upstream.address` is set then too, so its presence proves nothing). Undefined when Envoy did
 * not send the attribute: the engine then treats the response as the provider's, as before.
 */
export function responseOriginFrom(request: ProcessingRequestMsg): ResponseOrigin | undefined {
  const details =
    stringAttribute(request.attributes?.[EXT_PROC_ATTRIBUTES_KEY], RESPONSE_CODE_DETAILS_ATTRIBUTE) ??
    stringAttribute(request.response_headers?.attributes?.[EXT_PROC_ATTRIBUTES_KEY], RESPONSE_CODE_DETAILS_ATTRIBUTE);
  if (details === undefined) return undefined;
  return details === VIA_UPSTREAM ? 'upstream' : 'gateway';
}

/** The body of a request_body message as the core reads it; `truncated` when Envoy says more follows. */
export function requestBodyFrom(request: ProcessingRequestMsg): { bytes: Uint8Array; truncated: boolean } {
  const body = request.request_body;
  return { bytes: body?.body ?? new Uint8Array(0), truncated: body?.end_of_stream !== true };
}

/** The RequestView for a request_headers message; `provider` comes from the stream's gRPC metadata. */
export function requestViewFrom(request: ProcessingRequestMsg, provider: string): RequestView {
  const headers = request.request_headers;
  return {
    headers: headerBagFrom(headers?.headers),
    clientAddress: clientAddressFrom(request, headers),
    provider,
  };
}

/** The upstream status from a response_headers message's `:status`; null when absent or not 100..599. */
export function statusFrom(headers: HeaderBag): number | null {
  const raw = headers[':status'];
  const text = typeof raw === 'string' ? raw : raw?.[0];
  if (!text || !/^[1-5]\d\d$/.test(text)) return null;
  return Number(text);
}

// ---------------------------------------------------------------------------------------------
// core -> Envoy
// ---------------------------------------------------------------------------------------------

/**
 * Answer to request_headers (or, when keypool asked for the body first, to request_body): a header mutation on Allow,
 * an ImmediateResponse on Deny. Throws UnsafeHeaderError. A body answer carries the header mutation in its
 * CommonResponse; Envoy still holds the request headers then (BUFFERED), so the mutation reaches the upstream
 * (verified with Envoy 1.40, test/envoy/models-real.test.ts). The body itself is never changed.
 */
export function responseForDecision(decision: Decision, answering: 'request_headers' | 'request_body' = 'request_headers'): ProcessingResponseMsg {
  if (decision.kind === 'deny') return immediateResponseFor(decision);
  const response = {
    header_mutation: {
      remove_headers: checkedNames(decision.removeHeaders),
      set_headers: setHeadersFrom(decision.setHeaders),
    },
  };
  return answering === 'request_headers' ? { request_headers: { response } } : { request_body: { response } };
}

/**
 * The processing mode a request is switched to, in keypool's answer to its request_headers, when its decision needs
 * the request's model from the body (engine.needsBody): the shipped mode with request_body_mode BUFFERED_PARTIAL.
 * Envoy then holds the request headers, buffers the body up to its buffer limit and sends it as one request_body
 * message (end_of_stream true when the whole body fit); keypool decides on it and answers with the header mutation,
 * which Envoy applies to the held headers. Verified with Envoy 1.40 (test/envoy/models-real.test.ts), also with ext_proc
 * as an upstream filter (envoy-failover.yaml). Not BUFFERED: past the buffer limit Envoy 1.40 then neither answers
 * 413 nor sends the body, the request hangs until the route timeout; BUFFERED_PARTIAL hands keypool the first part
 * with end_of_stream false, and keypool refuses it (400 invalid_request). Requires the filter's
 * allow_mode_override: true and this exact mode in allowed_override_modes (a test checks every shipped file).
 */
export const BUFFER_REQUEST_BODY: ProcessingModeMsg = Object.freeze({
  request_header_mode: 'SEND',
  response_header_mode: 'SEND',
  request_body_mode: 'BUFFERED_PARTIAL',
  response_body_mode: 'NONE',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
});

/**
 * Answer to request_headers that defers the decision to the buffered body. It already removes the client's credential
 * headers: should Envoy ignore the override (a filter without the allowed_override_modes entry, verified with Envoy 1.40
 * to forward the request at once), the request reaches the provider without any credential, never with the client's
 * key. The answer to the body removes them again (harmless) and sets the pooled key. Throws UnsafeHeaderError.
 */
export function requestHeadersBufferBody(removeHeaders: readonly string[]): ProcessingResponseMsg {
  return {
    request_headers: removeHeaders.length === 0 ? {} : { response: { header_mutation: { remove_headers: checkedNames(removeHeaders) } } },
    mode_override: BUFFER_REQUEST_BODY,
  };
}

/**
 * The processing mode a response is switched to, in keypool's answer to its response_headers, when its status may
 * carry an error body keypool reads (src/core/provider-errors.ts ERROR_BODY_STATUSES): response_body_mode
 * BUFFERED_PARTIAL, so Envoy sends the body (up to its buffer limit, never failing a larger one) before passing the
 * response on, and keypool commits what the body says before it answers. Only those statuses: a 200's body, and any
 * SSE stream, never pass through keypool. keypool's answer changes nothing in the body.
 */
export const READ_ERROR_BODY: ProcessingModeMsg = Object.freeze({
  request_header_mode: 'SEND',
  response_header_mode: 'SEND',
  request_body_mode: 'NONE',
  response_body_mode: 'BUFFERED_PARTIAL',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
});

/** Answer to response_headers that asks for the (error) body before the response goes on. */
export const RESPONSE_HEADERS_READ_BODY: ProcessingResponseMsg = Object.freeze({
  response_headers: {},
  mode_override: READ_ERROR_BODY,
});

/** Answer to a response_body keypool asked for: continue, the body unchanged. */
export const RESPONSE_BODY_CONTINUE: ProcessingResponseMsg = Object.freeze({ response_body: {} });

/** Every mode keypool may switch a request to: each must be listed in the filter's allowed_override_modes. */
export function overrideModes(): readonly ProcessingModeMsg[] {
  return [HOLD_UNTIL_RESPONSE_END, BUFFER_REQUEST_BODY, READ_ERROR_BODY];
}

/** ImmediateResponse carrying the deny's explicit status, JSON body, headers, and its code as details. */
export function immediateResponseFor(deny: Deny): ProcessingResponseMsg {
  if (!Number.isInteger(deny.status) || deny.status < 200 || deny.status > 599) {
    throw new UnsafeHeaderError(`status ${String(deny.status)}`);
  }
  const extra = deny.headers.filter(([name]) => name.toLowerCase() !== 'content-type');
  const headers: HeaderMutationMsg = {
    set_headers: setHeadersFrom([['content-type', 'application/json'], ...extra]),
  };
  return {
    immediate_response: {
      status: { code: deny.status },
      headers,
      body: Buffer.from(deny.body, 'utf8'),
      // Lands in Envoy's response code details (%RESPONSE_CODE_DETAILS% in access logs).
      details: detailsFor(deny.code),
    },
  };
}

/** The answer for a stream keypool cannot decide (engine threw, unsafe decision, nonsense order). */
export function unavailableResponse(): ProcessingResponseMsg {
  return immediateResponseFor(KEYPOOL_UNAVAILABLE);
}

/**
 * Time Envoy grants on top of a decision's queue wait: the admission attempt after the wait and the answer's trip.
 * The filter's max_message_timeout (envoy/*.yaml) must be at least queue.max_wait_ms plus this, or Envoy ignores
 * the override and answers 504 at message_timeout.
 */
export const QUEUE_TIMEOUT_MARGIN_MS = 1000;

/** Sent alone before a decision waits in the admission queue: Envoy's message timer becomes the wait plus the margin. */
export function messageTimeoutOverride(maxWaitMs: number): OverrideMessageTimeoutMsg {
  const totalMs = Math.max(1, Math.ceil(maxWaitMs)) + QUEUE_TIMEOUT_MARGIN_MS;
  return { override_message_timeout: { seconds: Math.floor(totalMs / 1000), nanos: (totalMs % 1000) * 1_000_000 } };
}

/** Answer to a response_headers message: no mutation, continue. */
export const RESPONSE_HEADERS_CONTINUE: ProcessingResponseMsg = Object.freeze({ response_headers: {} });

/**
 * The processing mode a request is switched to, in keypool's answer to its response_headers, when its account's
 * concurrency slot must stay taken until the response has fully ended: the shipped mode with response trailers SEND.
 * What Envoy 1.40 does with it (verified, test/envoy/envoy-real.test.ts):
 * - it keeps the ext_proc stream open, because trailers might still come, and sends nothing while the body streams:
 *   no body chunk passes through keypool, SSE stays unbuffered, and no message_timeout runs meanwhile;
 * - when the response ends it ends the stream (half-close or reset), or first sends response_trailers if the
 *   upstream sent trailers: either one marks the end of the response;
 * - the response keeps its content-length (a STREAMED body mode would make Envoy drop it, and would put a
 *   keypool round trip in front of every chunk).
 * It is sent at the response headers, not the request headers: only then does keypool know whether a body follows.
 * The ext_proc filter needs allow_mode_override: true, and this exact mode in allowed_override_modes (Envoy
 * compares whole messages); otherwise Envoy ignores it silently and closes the stream at the response headers.
 */
export const HOLD_UNTIL_RESPONSE_END: ProcessingModeMsg = Object.freeze({
  request_header_mode: 'SEND',
  response_header_mode: 'SEND',
  request_body_mode: 'NONE',
  response_body_mode: 'NONE',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SEND',
});

const RESPONSE_HEADERS_HOLD: ProcessingResponseMsg = Object.freeze({
  response_headers: {},
  mode_override: HOLD_UNTIL_RESPONSE_END,
});

/** Answer to response_headers: continue; with `holdUntilResponseEnd`, also switch to HOLD_UNTIL_RESPONSE_END. */
export function responseHeadersAnswer(holdUntilResponseEnd: boolean): ProcessingResponseMsg {
  return holdUntilResponseEnd ? RESPONSE_HEADERS_HOLD : RESPONSE_HEADERS_CONTINUE;
}

/** Answer to response_trailers: no mutation, continue. */
export const RESPONSE_TRAILERS_CONTINUE: ProcessingResponseMsg = Object.freeze({ response_trailers: {} });

/** True when a headers message ends its HTTP message: no body and no trailers follow. */
export function endsMessage(headers: HttpHeadersMsg | undefined): boolean {
  return headers?.end_of_stream === true;
}

/** CONTINUE answers for messages keypool never asks for (bodies, trailers). */
export function continueResponseFor(kind: string): ProcessingResponseMsg | null {
  switch (kind) {
    case 'request_headers':
      return { request_headers: {} };
    case 'response_headers':
      return { response_headers: {} };
    case 'request_body':
      return { request_body: {} };
    case 'response_body':
      return { response_body: {} };
    case 'request_trailers':
      return { request_trailers: {} };
    case 'response_trailers':
      return { response_trailers: {} };
    default:
      return null;
  }
}

/** Shared by every set_headers entry: messages are only read (serialized), never changed after they are built. */
const APPEND_FALSE: { value: boolean } = Object.freeze({ value: false });

function setHeadersFrom(pairs: HeaderPairs): HeaderValueOptionMsg[] {
  const out = new Array<HeaderValueOptionMsg>(pairs.length);
  for (let i = 0; i < pairs.length; i += 1) {
    const [name, value] = pairs[i]!;
    out[i] = {
      header: { key: checkedName(name), raw_value: Buffer.from(checkedValue(name, value), 'utf8') },
      append: APPEND_FALSE,
    };
  }
  return out;
}

function checkedNames(names: readonly string[]): string[] {
  const out = new Array<string>(names.length);
  for (let i = 0; i < names.length; i += 1) out[i] = checkedName(names[i]!);
  return out;
}

// RFC 9110 token characters; pseudo-headers (`:path`) keep their leading colon.
const HEADER_NAME = /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const FORBIDDEN_IN_VALUE = /[\r\n\0]/;

/**
 * Names already checked, as given -> lower-cased. Decisions name the same few headers on every request (client
 * credential headers, the provider's auth header, x-keypool-*), so each is checked once. Bounded: cleared when full.
 */
const checkedNameCache = new Map<string, string>();
const CHECKED_NAME_CACHE_MAX = 1024;

function checkedName(name: string): string {
  const known = checkedNameCache.get(name);
  if (known !== undefined) return known;
  const lower = name.toLowerCase();
  if (!HEADER_NAME.test(lower)) throw new UnsafeHeaderError(`name ${JSON.stringify(name)}`);
  if (checkedNameCache.size >= CHECKED_NAME_CACHE_MAX) checkedNameCache.clear();
  checkedNameCache.set(name, lower);
  return lower;
}

function checkedValue(name: string, value: string): string {
  if (FORBIDDEN_IN_VALUE.test(value)) throw new UnsafeHeaderError(`${name}: value contains CR, LF or NUL`);
  return value;
}

function detailsFor(code: string): string {
  // Envoy wants response code details without whitespace; deny codes are snake_case already.
  return code.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** keypool's internal-error denial (503 keypool_unavailable, OpenAI error shape). */
export const KEYPOOL_UNAVAILABLE: Deny = deny('keypool_unavailable');
