// The hand-written wire format (src/adapters/envoy/wire-format.ts) against protobufjs on the vendored official protos:
// what Envoy sends decodes to what protobufjs decodes (unknown fields skipped; header values resolved into `value`
// as the codec would read them), and every answer keypool builds encodes to the bytes protobufjs writes.
import { describe, expect, it } from 'vitest';
import {
  HOLD_UNTIL_RESPONSE_END,
  QUEUE_TIMEOUT_MARGIN_MS,
  RESPONSE_BODY_CONTINUE,
  RESPONSE_HEADERS_CONTINUE,
  RESPONSE_HEADERS_READ_BODY,
  RESPONSE_TRAILERS_CONTINUE,
  continueResponseFor,
  requestHeadersBufferBody,
  messageTimeoutOverride,
  responseForDecision,
  responseHeadersAnswer,
  unavailableResponse,
} from '../../src/adapters/envoy/codec.js';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from '../../src/adapters/envoy/messages.js';
import { loadProtos } from '../../src/adapters/envoy/protos.js';
import { WireFormatError, decodeProcessingRequest, encodeProcessingResponse } from '../../src/adapters/envoy/wire-format.js';
import type { Allow, Deny } from '../../src/core/types.js';

interface MethodCodec {
  requestSerialize(value: unknown): Buffer;
  requestDeserialize(bytes: Buffer): unknown;
  responseSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}
const reference = loadProtos().extProcService['Process'] as unknown as MethodCodec;

const headers = (pairs: Array<[string, string]>) => ({ headers: pairs.map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) });
const address = (value: string) => ({ 'envoy.filters.http.ext_proc': { fields: { 'source.address': { kind: 'stringValue', stringValue: value } } } });

const REQUESTS: Array<[string, ProcessingRequestMsg]> = [
  [
    'request_headers with raw_value, UTF-8 and the source.address attribute',
    {
      request: 'request_headers',
      request_headers: { headers: headers([[':path', '/openai/v1/chat'], ['authorization', 'Bearer kp_é'], ['x-a', '1'], ['x-a', '2']]), end_of_stream: false },
      attributes: address('[::1]:443'),
    },
  ],
  ['legacy value field and an empty header', { request: 'request_headers', request_headers: { headers: { headers: [{ key: 'a', value: 'old' }, { key: 'e' }] } } }],
  ['attributes on HttpHeaders (Envoy < 1.27)', { request: 'request_headers', request_headers: { headers: headers([['a', 'b']]), attributes: address('1.2.3.4:5') } }],
  ['response_headers ending the message', { request: 'response_headers', response_headers: { headers: headers([[':status', '429'], ['retry-after', '3']]), end_of_stream: true } }],
  ['response_trailers', { request: 'response_trailers', response_trailers: { trailers: headers([['grpc-status', '0']]) } }],
  ['request_trailers', { request: 'request_trailers', request_trailers: { trailers: headers([['x', 'y']]) } }],
  ['request_body', { request: 'request_body', request_body: { body: Buffer.from('{"model":"m"}'), end_of_stream: true } }],
  ['response_body', { request: 'response_body', response_body: { body: Buffer.from('data: x\n\n') } }],
  ['observability_mode', { request: 'response_headers', response_headers: { headers: headers([[':status', '200']]) }, observability_mode: true }],
  [
    'scalar attribute values of every kind',
    {
      request: 'request_headers',
      request_headers: {},
      attributes: {
        a: {
          fields: {
            n: { kind: 'numberValue', numberValue: 1.5 },
            b: { kind: 'boolValue', boolValue: true },
            z: { kind: 'nullValue', nullValue: 'NULL_VALUE' },
          },
        },
      },
    },
  ],
];

/**
 * protobufjs's decoding with each header's value resolved as keypool's decoder does it (raw_value as UTF-8 when
 * non-empty, else value; raw_value dropped), so the two can be compared whole.
 */
function resolved(decoded: unknown): unknown {
  const message = decoded as Record<string, any>; // freshly decoded: changed in place
  for (const part of ['request_headers', 'response_headers']) {
    for (const h of message[part]?.headers?.headers ?? []) resolveHeader(h);
  }
  for (const part of ['request_trailers', 'response_trailers']) {
    for (const h of message[part]?.trailers?.headers ?? []) resolveHeader(h);
  }
  return message;
}

function resolveHeader(h: { value?: string; raw_value?: Uint8Array }): void {
  if (h.raw_value !== undefined && h.raw_value.length > 0) h.value = Buffer.from(h.raw_value).toString('utf8');
  delete h.raw_value;
}

describe('decodeProcessingRequest', () => {
  it.each(REQUESTS)('%s: as protobufjs decodes it', (_name, message) => {
    const bytes = reference.requestSerialize(message);
    expect(decodeProcessingRequest(bytes)).toEqual(resolved(reference.requestDeserialize(bytes)));
  });

  it('a header value: raw_value wins over value; an empty raw_value falls back to value', () => {
    const bytes = reference.requestSerialize({
      request_headers: { headers: { headers: [{ key: 'a', value: 'old', raw_value: Buffer.from('new') }, { key: 'b', value: 'v', raw_value: Buffer.alloc(0) }] } },
    });
    expect(decodeProcessingRequest(bytes).request_headers?.headers?.headers).toEqual([
      { key: 'a', value: 'new' },
      { key: 'b', value: 'v' },
    ]);
  });

  it("skips fields it does not know, such as Envoy 1.40's protocol_config (11) and metadata_context (8)", () => {
    const [, message] = REQUESTS[0]!;
    const known = reference.requestSerialize(message);
    // 8: metadata_context {filter_metadata {key "x"}}; 11: protocol_config {request_body_mode: 2}; 12: a fixed64;
    // 13: a fixed32; 14: a varint.
    const unknown = Buffer.from([0x42, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0x78, 0x5a, 0x02, 0x08, 0x02, 0x61, 1, 2, 3, 4, 5, 6, 7, 8, 0x6d, 1, 2, 3, 4, 0x70, 0x96, 0x01]);
    expect(decodeProcessingRequest(Buffer.concat([unknown, known]))).toEqual(resolved(reference.requestDeserialize(known)));
  });

  it('skips nested struct and list attribute values (keypool reads scalars only)', () => {
    const bytes = reference.requestSerialize({
      request_headers: {},
      attributes: { a: { fields: { s: { structValue: { fields: { x: { stringValue: 'y' } } } }, l: { listValue: { values: [{ stringValue: 'y' }] } }, k: { stringValue: 'v' } } } },
    });
    expect(decodeProcessingRequest(bytes).attributes).toEqual({ a: { fields: { s: {}, l: {}, k: { kind: 'stringValue', stringValue: 'v' } } } });
  });

  it.each([
    ['a truncated length', Buffer.from([0x12, 0x05, 0x0a])],
    ['a truncated varint', Buffer.from([0x50, 0x80])],
    ['a group wire type', Buffer.from([0x0b])],
    ['a fixed64 past the end', Buffer.from([0x61, 1, 2])],
  ])('rejects %s', (_name, bytes) => {
    expect(() => decodeProcessingRequest(bytes)).toThrow(WireFormatError);
  });
});

const ALLOW: Allow = {
  kind: 'allow',
  keyId: 'key-1',
  accountId: 'acc-1',
  accountName: 'openai-a',
  priority: 2,
  tenant: 'acmé',
  removeHeaders: ['authorization', 'x-api-key'],
  setHeaders: [
    ['authorization', `Bearer sk-${'x'.repeat(200)}`],
    ['x-keypool-priority', '2'],
    ['x-keypool-tenant', 'acmé'],
  ],
};

const DENY: Deny = {
  kind: 'deny',
  status: 429,
  code: 'pool_exhausted',
  message: 'all accounts are cooling down',
  headers: [['retry-after', '12']],
  body: JSON.stringify({ error: { type: 'rate_limit_error', code: 'pool_exhausted', message: 'x'.repeat(300) } }),
};

const RESPONSES: Array<[string, ProcessingResponseMsg]> = [
  ['an allow (header mutation, a value longer than 127 bytes)', responseForDecision(ALLOW)],
  ['an allow without headers to remove or set', responseForDecision({ ...ALLOW, removeHeaders: [], setHeaders: [] })],
  ['a deny (ImmediateResponse: status, headers, body, details)', responseForDecision(DENY)],
  ['keypool_unavailable', unavailableResponse()],
  ['response_headers CONTINUE', RESPONSE_HEADERS_CONTINUE],
  ['response_headers with the hold mode_override', responseHeadersAnswer(true)],
  ['response_trailers CONTINUE', RESPONSE_TRAILERS_CONTINUE],
  ['request_headers asking for the body, credentials removed', requestHeadersBufferBody(['authorization', 'x-api-key'])],
  ['request_headers asking for the body, nothing to remove', requestHeadersBufferBody([])],
  ['an allow answering a request_body', responseForDecision(ALLOW, 'request_body')],
  ['response_headers asking for the error body', RESPONSE_HEADERS_READ_BODY],
  ['response_body CONTINUE (body unchanged)', RESPONSE_BODY_CONTINUE],
  ['override_message_timeout (seconds and nanos)', messageTimeoutOverride(2_500)],
  ['override_message_timeout (whole seconds)', messageTimeoutOverride(29_000)],
  ['override_message_timeout (nanos only)', { override_message_timeout: { seconds: 0, nanos: 5_000_000 } }],
  ...(['request_headers', 'response_headers', 'request_body', 'response_body', 'request_trailers', 'response_trailers'] as const).map(
    (kind): [string, ProcessingResponseMsg] => [`CONTINUE to ${kind}`, continueResponseFor(kind)!],
  ),
];

describe('encodeProcessingResponse', () => {
  it.each(RESPONSES)('%s: the bytes protobufjs writes', (_name, message) => {
    const bytes = encodeProcessingResponse(message);
    expect(bytes.toString('hex')).toBe(reference.responseSerialize(message).toString('hex'));
  });

  it('the hold override decodes to HOLD_UNTIL_RESPONSE_END, every field', () => {
    const decoded = reference.responseDeserialize(encodeProcessingResponse(responseHeadersAnswer(true))) as Record<string, unknown>;
    expect(decoded['mode_override']).toEqual(HOLD_UNTIL_RESPONSE_END);
  });

  it('the timeout override is the wait plus the margin, alone in its message', () => {
    const decoded = reference.responseDeserialize(encodeProcessingResponse(messageTimeoutOverride(2_500))) as Record<string, unknown>;
    expect(Object.keys(decoded).filter((k) => decoded[k] !== undefined && decoded[k] !== null)).toEqual(['override_message_timeout']);
    const duration = decoded['override_message_timeout'] as { seconds: unknown; nanos: number };
    expect(Number(duration.seconds) * 1000 + duration.nanos / 1e6).toBe(2_500 + QUEUE_TIMEOUT_MARGIN_MS);
  });

  it('frozen answers are encoded once and the same bytes served again', () => {
    expect(encodeProcessingResponse(RESPONSE_HEADERS_CONTINUE)).toBe(encodeProcessingResponse(RESPONSE_HEADERS_CONTINUE));
    const allow = responseForDecision(ALLOW);
    expect(encodeProcessingResponse(allow)).not.toBe(encodeProcessingResponse(allow));
  });

  it('refuses a message without a response', () => {
    expect(() => encodeProcessingResponse({} as ProcessingResponseMsg)).toThrow(WireFormatError);
  });
});
