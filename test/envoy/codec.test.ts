// Pure codec: ProcessingRequest fixtures (as proto-loader decodes what Envoy sends) -> RequestView,
// decisions -> ProcessingResponse objects.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  HOLD_UNTIL_RESPONSE_END,
  overrideModes,
  requestBodyFrom,
  requestHeadersBufferBody,
  KEYPOOL_UNAVAILABLE,
  RESPONSE_HEADERS_CONTINUE,
  UnsafeHeaderError,
  clientAddressFrom,
  continueResponseFor,
  endsMessage,
  headerBagFrom,
  requestViewFrom,
  responseForDecision,
  responseHeadersAnswer,
  statusFrom,
  unavailableResponse,
} from '../../src/adapters/envoy/codec.js';
import type { HeaderValueMsg, ProcessingRequestMsg } from '../../src/adapters/envoy/messages.js';
import type { Allow, Deny } from '../../src/core/types.js';

const raw = (key: string, value: string): HeaderValueMsg => ({ key, raw_value: Buffer.from(value) });

function requestHeaders(headers: HeaderValueMsg[], address?: string): ProcessingRequestMsg {
  return {
    request: 'request_headers',
    request_headers: { headers: { headers }, end_of_stream: true },
    ...(address === undefined
      ? {}
      : {
          attributes: {
            'envoy.filters.http.ext_proc': {
              fields: { 'source.address': { kind: 'stringValue', stringValue: address } },
            },
          },
        }),
  };
}

const ALLOW: Allow = {
  kind: 'allow',
  keyId: 'key-1',
  accountId: 'acc-1',
  accountName: 'openai-a',
  priority: 2,
  tenant: 'acme',
  removeHeaders: ['authorization', 'x-api-key'],
  setHeaders: [
    ['authorization', 'Bearer sk-pooled'],
    ['x-keypool-priority', '2'],
    ['x-keypool-tenant', 'acme'],
  ],
};

const DENY_429: Deny = {
  kind: 'deny',
  status: 429,
  code: 'pool_exhausted',
  message: 'all accounts are cooling down',
  headers: [['retry-after', '12']],
  body: JSON.stringify({ error: { type: 'rate_limit_error', code: 'pool_exhausted', message: 'all accounts are cooling down' } }),
};

describe('headerBagFrom', () => {
  it.each([
    ['raw_value decoded as UTF-8', [raw('X-Api-Key', 'sk-é')], { 'x-api-key': 'sk-é' }],
    ['value when raw_value absent', [{ key: 'authorization', value: 'Bearer a' }], { authorization: 'Bearer a' }],
    ['value when raw_value empty', [{ key: 'a', value: 'v', raw_value: Buffer.alloc(0) }], { a: 'v' }],
    ['raw_value wins over value', [{ key: 'a', value: 'old', raw_value: Buffer.from('new') }], { a: 'new' }],
    ['empty header', [{ key: 'a' }], { a: '' }],
    ['repeated headers collected in order', [raw('x-a', '1'), raw('X-A', '2'), raw('x-a', '3')], { 'x-a': ['1', '2', '3'] }],
    ['pseudo-headers kept', [raw(':path', '/v1/chat'), raw(':method', 'POST')], { ':path': '/v1/chat', ':method': 'POST' }],
    ['nameless entries skipped', [{ value: 'x' }], {}],
  ] as const)('%s', (_name, headers, expected) => {
    expect({ ...headerBagFrom({ headers: [...headers] }) }).toEqual(expected);
  });

  it('missing header map -> empty bag', () => {
    expect({ ...headerBagFrom(undefined) }).toEqual({});
  });

  it('a header named __proto__ stays data', () => {
    const bag = headerBagFrom({ headers: [raw('__proto__', 'x')] });
    expect(bag['__proto__']).toBe('x');
    // The bag inherits nothing: no Object.prototype members, no accessor behind __proto__.
    expect('toString' in bag).toBe(false);
    expect('constructor' in bag).toBe(false);
    expect('hasOwnProperty' in bag).toBe(false);
    expect(Object.keys(bag)).toEqual(['__proto__']);
    expect(headerBagFrom({ headers: [raw('x', 'y')] })['toString']).toBeUndefined();
  });
});

describe('clientAddressFrom', () => {
  it.each([
    ['IPv4 with port', '1.2.3.4:5678'],
    ['IPv6 with port', '[::1]:443'],
  ])('%s', (_name, address) => {
    const req = requestHeaders([], address);
    expect(clientAddressFrom(req, req.request_headers)).toBe(address);
  });

  it('missing attributes -> null (the core fails closed for keys with an allowlist)', () => {
    const req = requestHeaders([]);
    expect(clientAddressFrom(req, req.request_headers)).toBeNull();
  });

  it('empty source.address -> null', () => {
    const req = requestHeaders([], '');
    expect(clientAddressFrom(req, req.request_headers)).toBeNull();
  });

  it('attributes of another filter are not trusted', () => {
    const req: ProcessingRequestMsg = {
      request: 'request_headers',
      request_headers: {},
      attributes: { other: { fields: { 'source.address': { stringValue: '9.9.9.9:1' } } } },
    };
    expect(clientAddressFrom(req, req.request_headers)).toBeNull();
  });

  it('falls back to the deprecated HttpHeaders.attributes', () => {
    const req: ProcessingRequestMsg = {
      request: 'request_headers',
      request_headers: {
        attributes: { 'envoy.filters.http.ext_proc': { fields: { 'source.address': { stringValue: '5.6.7.8:9' } } } },
      },
    };
    expect(clientAddressFrom(req, req.request_headers)).toBe('5.6.7.8:9');
  });
});

describe('requestViewFrom', () => {
  it('builds the view the engine decides on', () => {
    const view = requestViewFrom(requestHeaders([raw(':path', '/v1/chat/completions'), raw('Authorization', 'Bearer kp_x')], '10.0.0.7:40000'), 'openai');
    expect({ ...view, headers: { ...view.headers } }).toEqual({
      headers: { ':path': '/v1/chat/completions', authorization: 'Bearer kp_x' },
      clientAddress: '10.0.0.7:40000',
      provider: 'openai',
    });
  });
});

describe('statusFrom', () => {
  it.each([
    [{ ':status': '200' }, 200],
    [{ ':status': '429' }, 429],
    [{ ':status': ['503', '200'] }, 503],
    [{}, null],
    [{ ':status': 'abc' }, null],
    [{ ':status': '99' }, null],
    [{ ':status': '600' }, null],
  ] as const)('%j -> %s', (headers, expected) => {
    expect(statusFrom(headers)).toBe(expected);
  });
});

describe('responseForDecision', () => {
  it('Allow -> HeadersResponse with remove_headers and raw_value-only set_headers, append false', () => {
    const response = responseForDecision(ALLOW);
    expect(response).toEqual({
      request_headers: {
        response: {
          header_mutation: {
            remove_headers: ['authorization', 'x-api-key'],
            set_headers: [
              { header: { key: 'authorization', raw_value: Buffer.from('Bearer sk-pooled') }, append: { value: false } },
              { header: { key: 'x-keypool-priority', raw_value: Buffer.from('2') }, append: { value: false } },
              { header: { key: 'x-keypool-tenant', raw_value: Buffer.from('acme') }, append: { value: false } },
            ],
          },
        },
      },
    });
    const set = 'request_headers' in response ? response.request_headers.response?.header_mutation?.set_headers : [];
    for (const option of set ?? []) expect(option.header).not.toHaveProperty('value');
  });

  it('Deny -> ImmediateResponse with explicit status, JSON content type, retry-after, body and details', () => {
    expect(responseForDecision(DENY_429)).toEqual({
      immediate_response: {
        status: { code: 429 },
        headers: {
          set_headers: [
            { header: { key: 'content-type', raw_value: Buffer.from('application/json') }, append: { value: false } },
            { header: { key: 'retry-after', raw_value: Buffer.from('12') }, append: { value: false } },
          ],
        },
        body: Buffer.from(DENY_429.body),
        details: 'pool_exhausted',
      },
    });
  });

  it('a deny that brings its own content-type does not get two', () => {
    const response = responseForDecision({ ...DENY_429, headers: [['Content-Type', 'text/plain']] });
    const names = 'immediate_response' in response ? response.immediate_response.headers?.set_headers?.map((h) => h.header.key) : [];
    expect(names).toEqual(['content-type']);
  });

  it.each([
    ['CR', 'Bearer a\rb'],
    ['LF', 'Bearer a\nX-Evil: 1'],
    ['NUL', 'Bearer a\0'],
  ])('refuses a set value with %s', (_name, value) => {
    expect(() => responseForDecision({ ...ALLOW, setHeaders: [['authorization', value]] })).toThrow(UnsafeHeaderError);
  });

  it('refuses a deny header value with CR/LF', () => {
    expect(() => responseForDecision({ ...DENY_429, headers: [['retry-after', '1\r\nx: y']] })).toThrow(UnsafeHeaderError);
  });

  it.each([['bad name'], [''], ['x\r\n'], ['a:b']])('refuses header name %j', (name) => {
    expect(() => responseForDecision({ ...ALLOW, setHeaders: [[name, 'v']] })).toThrow(UnsafeHeaderError);
    expect(() => responseForDecision({ ...ALLOW, removeHeaders: [name] })).toThrow(UnsafeHeaderError);
  });

  it('lower-cases names', () => {
    const response = responseForDecision({ ...ALLOW, removeHeaders: ['X-Api-Key'], setHeaders: [['X-Keypool-Tenant', 't']] });
    const mutation = 'request_headers' in response ? response.request_headers.response?.header_mutation : undefined;
    expect(mutation?.remove_headers).toEqual(['x-api-key']);
    expect(mutation?.set_headers?.[0]?.header.key).toBe('x-keypool-tenant');
  });

  it.each([[0], [99], [600], [429.5]])('refuses deny status %s (Envoy would send 200 or reject)', (status) => {
    expect(() => responseForDecision({ ...DENY_429, status })).toThrow(UnsafeHeaderError);
  });
});

describe('asking for the request body (pools that route by model)', () => {
  it('answers request_headers with the credential headers removed and the BUFFERED_PARTIAL mode', () => {
    expect(requestHeadersBufferBody(['authorization', 'X-Api-Key'])).toEqual({
      request_headers: { response: { header_mutation: { remove_headers: ['authorization', 'x-api-key'] } } },
      mode_override: { ...HOLD_UNTIL_RESPONSE_END, request_body_mode: 'BUFFERED_PARTIAL', response_trailer_mode: 'SKIP' },
    });
    expect(() => requestHeadersBufferBody(['bad name'])).toThrow(UnsafeHeaderError);
  });

  it('the decision on the body carries the same header mutation, as a body answer', () => {
    const asHeaders = responseForDecision(ALLOW);
    const asBody = responseForDecision(ALLOW, 'request_body');
    expect(asBody).toEqual({ request_body: (asHeaders as { request_headers: unknown }).request_headers });
    // A denial is an ImmediateResponse whichever message it answers.
    expect(responseForDecision(DENY_429, 'request_body')).toEqual(responseForDecision(DENY_429));
  });

  it.each([
    [{ request_body: { body: Buffer.from('{"model":"o1"}'), end_of_stream: true } }, '{"model":"o1"}', false],
    // BUFFERED_PARTIAL past the buffer limit: the first part, more to follow.
    [{ request_body: { body: Buffer.from('{"model":'), end_of_stream: false } }, '{"model":', true],
    [{ request_body: { body: Buffer.from('{}') } }, '{}', true],
    [{ request_body: { end_of_stream: true } }, '', false],
  ])('requestBodyFrom(%j)', (msg, text, truncated) => {
    const body = requestBodyFrom(msg as ProcessingRequestMsg);
    expect(Buffer.from(body.bytes).toString()).toBe(text);
    expect(body.truncated).toBe(truncated);
  });
});

describe('fixed answers', () => {
  it('unavailable -> 503 keypool_unavailable in the OpenAI error shape', () => {
    const response = unavailableResponse();
    expect('immediate_response' in response && response.immediate_response.status.code).toBe(503);
    const body = 'immediate_response' in response ? JSON.parse(response.immediate_response.body?.toString() ?? '') : null;
    expect(body).toEqual({ error: { type: expect.any(String), code: 'keypool_unavailable', message: expect.any(String) } });
    expect(KEYPOOL_UNAVAILABLE.code).toBe('keypool_unavailable');
  });

  it.each([
    ['request_body', { request_body: {} }],
    ['response_body', { response_body: {} }],
    ['request_trailers', { request_trailers: {} }],
    ['response_trailers', { response_trailers: {} }],
    ['something_new', null],
  ])('continue for %s', (kind, expected) => {
    expect(continueResponseFor(kind)).toEqual(expected);
  });
});

describe('holding a concurrency slot until the response ends', () => {
  it('response_headers answer: plain continue, or continue plus the hold mode', () => {
    expect(responseHeadersAnswer(false)).toBe(RESPONSE_HEADERS_CONTINUE);
    expect(responseHeadersAnswer(true)).toEqual({ response_headers: {}, mode_override: HOLD_UNTIL_RESPONSE_END });
  });

  it('the hold mode is the shipped mode with response trailers SEND (no bodies: nothing per chunk)', () => {
    expect(HOLD_UNTIL_RESPONSE_END).toEqual({
      request_header_mode: 'SEND',
      response_header_mode: 'SEND',
      request_body_mode: 'NONE',
      response_body_mode: 'NONE',
      request_trailer_mode: 'SKIP',
      response_trailer_mode: 'SEND',
    });
  });

  it.each([
    [{ end_of_stream: true }, true],
    [{ end_of_stream: false }, false],
    [{}, false],
    [undefined, false],
  ])('endsMessage(%j) -> %s', (headers, expected) => {
    expect(endsMessage(headers)).toBe(expected);
  });
});

describe('shipped Envoy configs agree with the codec', () => {
  const EXT_PROC = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
  type Filter = Record<string, unknown>;
  const extProcFilters = (node: unknown): Filter[] => {
    if (Array.isArray(node)) return node.flatMap(extProcFilters);
    if (node === null || typeof node !== 'object') return [];
    const obj = node as Filter;
    return [...(obj['@type'] === EXT_PROC ? [obj] : []), ...Object.values(obj).flatMap(extProcFilters)];
  };

  it.each([
    'envoy/envoy.yaml',
    'envoy/envoy-failover.yaml',
    'envoy/envoy-mtls.yaml',
    'envoy/envoy-local.yaml',
    'deploy/kubernetes/base/envoy.yaml',
    'deploy/kubernetes/recipes/istio/envoyfilter.yaml',
  ])(
    '%s: every ext_proc filter allows exactly keypool\'s override modes (hold, request body, error body), and ships the cheap mode',
    (file) => {
      const filters = extProcFilters(parse(readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8')));
      expect(filters.length).toBeGreaterThan(0);
      for (const filter of filters) {
        expect(filter['allow_mode_override']).toBe(true);
        // Envoy compares a mode_override with these entries as whole messages.
        expect(filter['allowed_override_modes']).toEqual(overrideModes());
        expect(filter['processing_mode']).toEqual({ ...HOLD_UNTIL_RESPONSE_END, response_trailer_mode: 'SKIP' });
        // Envoy ignores mode_override when bodies are sent before the header answer.
        expect(filter['send_body_without_waiting_for_header_response']).toBeUndefined();
      }
    },
  );
});
