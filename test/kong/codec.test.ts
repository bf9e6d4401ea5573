import { createRequire } from 'node:module';
import { describe, expect, test } from 'vitest';
import {
  UNAVAILABLE_RECORD,
  headerBagFromKong,
  parseKongConfig,
  recordFromOutcome,
  ticketFromRecord,
  upstreamMutation,
} from '../../src/adapters/kong/codec.js';
import { deny } from '../../src/core/errors.js';
import { STRATEGIES } from '../../src/core/types.js';
import type { Ticket } from '../../src/ports.js';

const entry = createRequire(import.meta.url)('../../kong/plugins/keypool.cjs') as {
  Schema: Array<Record<string, Record<string, unknown>>>;
  Version: string;
  Priority: number;
};

const KONG_FIELDS = { __plugin_id: 'b6f2...', __seq__: 3, route_id: 'r1', service_id: null, consumer_id: null };

describe('parseKongConfig', () => {
  test.each([
    ['provider only', { provider: 'openai' }, { provider: 'openai', strategy: null, keyHeaders: null }],
    ['Kong extra fields and nulls', { provider: 'anthropic', strategy: null, key_headers: null, ...KONG_FIELDS },
      { provider: 'anthropic', strategy: null, keyHeaders: null }],
    ['overrides', { provider: 'azure-east', strategy: 'least-loaded', key_headers: ['x-api-key', 'authorization'] },
      { provider: 'azure-east', strategy: 'least-loaded', keyHeaders: ['x-api-key', 'authorization'] }],
  ])('accepts %s', (_name, raw, expected) => {
    expect(parseKongConfig(raw)).toEqual({ ok: true, config: expected });
  });

  test.each([
    ['no provider', { strategy: 'priority' }, /provider is required/],
    ['upper-case provider', { provider: 'OpenAI' }, /lower-case provider slug/],
    // A provider slug never holds `_` (src/catalog/rules.ts): such a route could never match a pool.
    ['provider with an underscore', { provider: 'azure_east' }, /lower-case provider slug/],
    ['unknown strategy', { provider: 'openai', strategy: 'fastest' }, /strategy must be one of: round-robin, /],
    ['empty key header list', { provider: 'openai', key_headers: [] }, /key_headers must list 1 to 8/],
    ['header with a colon', { provider: 'openai', key_headers: ['x-api-key:'] }, /lower-case header names/],
    ['not an object', 'provider=openai', /must be an object/],
  ])('rejects %s clearly', (_name, raw, message) => {
    const result = parseKongConfig(raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatch(message);
  });
});

describe('the plugin entry Schema agrees with the codec', () => {
  const fields = Object.fromEntries(entry.Schema.flatMap((field) => Object.entries(field)));

  test('fields, requiredness and strategies', () => {
    expect(Object.keys(fields)).toEqual(['provider', 'strategy', 'key_headers']);
    expect(fields['provider']).toMatchObject({ type: 'string', required: true });
    expect(fields['strategy']).toMatchObject({ type: 'string', required: false, one_of: [...STRATEGIES] });
    expect(fields['key_headers']).toMatchObject({ type: 'array', required: false, len_min: 1, len_max: 8 });
  });

  test('version and priority', () => {
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    expect(entry.Version).toBe(pkg.version);
    expect(entry.Priority).toBeGreaterThan(-1000); // the post-function guard must run after keypool
  });
});

describe('headerBagFromKong', () => {
  test.each([
    ['Kong multimap', { 'x-api-key': ['k'], accept: ['a', 'b'], empty: [] }, { 'x-api-key': 'k', accept: ['a', 'b'] }],
    ['strings', { 'X-Api-Key': 'k' }, { 'x-api-key': 'k' }],
    ['harness pairs', [['x-api-key', 'k'], ['accept', 'a']], { 'x-api-key': 'k', accept: 'a' }],
    ['nothing', null, {}],
    ['empty array (Lua empty table)', [], {}],
  ])('%s', (_name, raw, expected) => {
    expect(headerBagFromKong(raw)).toEqual(expected);
  });

  test('prototype-free: headers named __proto__, constructor, toString are data; absent ones read undefined', () => {
    const raw = JSON.parse('{"__proto__":["p"],"constructor":["c"],"tostring":["t"]}') as unknown;
    const bag = headerBagFromKong(raw);
    expect(Object.getPrototypeOf(bag)).toBeNull();
    expect([bag['__proto__'], bag['constructor'], bag['tostring']]).toEqual(['p', 'c', 't']);
    expect(headerBagFromKong({ 'x-api-key': ['k'] })['constructor']).toBeUndefined();
    expect(headerBagFromKong([['constructor', 'a'], ['constructor', 'b']])['constructor']).toEqual(['a', 'b']);
  });
});

describe('upstreamMutation', () => {
  test('a header that is set is not cleared first (set replaces it)', () => {
    expect(upstreamMutation(['authorization'], [['authorization', 'Bearer sk'], ['x-keypool-priority', '5']])).toEqual({
      clear: [],
      set: { authorization: 'Bearer sk', 'x-keypool-priority': '5' },
      redact: [], // Kong's serializer already hides authorization
    });
  });

  test('an injected x-api-key is redacted in serialized logs; other client credentials are cleared', () => {
    expect(upstreamMutation(['x-api-key', 'Authorization'], [['x-api-key', 'sk-ant']])).toEqual({
      clear: ['authorization'],
      set: { 'x-api-key': 'sk-ant' },
      redact: ['request.headers.x-api-key'],
    });
  });

  test.each(['api-key', 'x-goog-api-key'])('%s is redacted', (name) => {
    expect(upstreamMutation([], [[name, 'secret']]).redact).toEqual([`request.headers.${name}`]);
  });
});

describe('records in kong.ctx.shared', () => {
  const ticket: Ticket = {
    pool: 'openai',
    accountId: 'a1',
    accountName: 'primary',
    leaseId: 'l1',
    keyId: 'k1',
    startedAtMs: 1_700_000_000_123,
    holdsConcurrencySlot: false,
    model: 'gpt-4o',
    scope: 'openai-org/project-x',
  };

  test('a denial carries status, the core body and content-type first', () => {
    const decision = deny('pool_exhausted', { retryAfterSec: 7 });
    expect(recordFromOutcome({ decision, ticket: null })).toEqual({
      action: 'deny',
      status: 429,
      code: 'pool_exhausted',
      body: decision.body,
      headers: { 'content-type': 'application/json', 'retry-after': '7' },
    });
  });

  test('the unavailable record is the core keypool_unavailable denial', () => {
    expect(UNAVAILABLE_RECORD).toMatchObject({ status: 503, code: 'keypool_unavailable', body: deny('keypool_unavailable').body });
  });

  test('a ticket survives the round trip and junk does not pass as one', () => {
    expect(ticketFromRecord({ action: 'allow', ticket: { ...ticket, extra: 1 } })).toEqual(ticket);
    expect(ticketFromRecord({ action: 'deny', ticket })).toBeNull();
    // nil in Lua: the model reads as unknown, the scope as absent (the engine reads it from the snapshot).
    const { model: _model, scope: _scope, ...withoutOptional } = ticket;
    expect(ticketFromRecord({ action: 'allow', ticket: withoutOptional })).toEqual({ ...withoutOptional, model: null });
    expect(ticketFromRecord({ action: 'allow', ticket: { ...ticket, scope: false } })).toEqual({ ...withoutOptional, model: 'gpt-4o' });
    expect(ticketFromRecord({ action: 'allow', ticket: { ...ticket, model: 7 } })).toBeNull();
    expect(ticketFromRecord({ action: 'allow', ticket: { ...ticket, startedAtMs: '1' } })).toBeNull();
    expect(ticketFromRecord(null)).toBeNull();
    expect(ticketFromRecord([])).toBeNull();
  });
});
