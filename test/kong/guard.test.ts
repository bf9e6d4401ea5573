// The Lua fail-closed guard (kong/guard.lua, inlined in kong/kong.yml as a post-function) run by luajit against
// a small fake `kong`, fed with exactly what the JS plugin records in kong.ctx.shared for every outcome.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { describe, expect, test } from 'vitest';
import { UNAVAILABLE_RECORD, parseKongConfig, recordFromOutcome } from '../../src/adapters/kong/codec.js';
import { DENY_SPECS, deny } from '../../src/core/errors.js';
import type { DenyCode } from '../../src/core/types.js';
import { REQUIRE_KONG_TOOLS, readKongYml } from './kong-tools.js';
import { GUARD_SOURCE, HAVE_LUAJIT, guardRedactions, runGuardUnderLuajit, toLua } from './guard-runner.js';
import { luaRoundTrip } from './kong-request.js';


/** What the JS side records, after its trip through a Lua table. */
function recorded(code: DenyCode, retryAfterSec?: number): unknown {
  return luaRoundTrip(recordFromOutcome({ decision: deny(code, { retryAfterSec }), ticket: null }));
}

describe.skipIf(!HAVE_LUAJIT)('the guard under luajit', () => {
  test.each(Object.keys(DENY_SPECS) as DenyCode[])('a recorded %s denial is answered exactly', (code) => {
    expect(runGuardUnderLuajit(recorded(code))).toEqual({
      exited: true,
      status: DENY_SPECS[code].status,
      body: deny(code).body,
      headers: { 'content-type': 'application/json', ...(DENY_SPECS[code].status === 429 ? { 'retry-after': '1' } : {}) },
    });
  });

  test('retry-after travels with the denial', () => {
    expect(runGuardUnderLuajit(recorded('pool_exhausted', 42))).toMatchObject({ status: 429, headers: { 'retry-after': '42' } });
  });

  test('an allow passes (the guard does not answer)', () => {
    const ticket = { pool: 'openai', accountId: 'a', accountName: 'n', leaseId: 'l', keyId: 'k', startedAtMs: 1_700_000_000_000, holdsConcurrencySlot: false };
    expect(runGuardUnderLuajit(luaRoundTrip({ action: 'allow', ticket }))).toEqual({ exited: false });
    expect(runGuardUnderLuajit(luaRoundTrip({ action: 'allow', ticket: null }))).toEqual({ exited: false });
  });

  test.each([
    ['no decision at all (plugin server down, phase threw)', undefined],
    ['a string', 'allow'],
    ['a denial without status', { action: 'deny', body: '{}' }],
    ['an unknown action', { action: 'maybe', status: 200 }],
  ])('%s -> 503 keypool_unavailable', (_name, value) => {
    expect(runGuardUnderLuajit(value)).toEqual({
      exited: true,
      status: 503,
      body: deny('keypool_unavailable').body,
      headers: { 'content-type': 'application/json' },
    });
  });

  test('no decision (plugin server down): the guard hides the client credential headers Kong would log in clear', () => {
    expect(guardRedactions(undefined)).toEqual(['request.headers.x-api-key', 'request.headers.api-key', 'request.headers.x-goog-api-key']);
    // keypool's own records: it already hid them itself.
    expect(guardRedactions(luaRoundTrip(UNAVAILABLE_RECORD))).toEqual([]);
    expect(guardRedactions(recorded('invalid_api_key'))).toEqual([]);
  });

  test("the JS side's own 503 record and the guard's fallback are the same answer", () => {
    expect(runGuardUnderLuajit(luaRoundTrip(UNAVAILABLE_RECORD))).toEqual(runGuardUnderLuajit(undefined));
  });

  test('the Schema Lua patterns accept exactly what the plugin accepts', () => {
    const entry = createRequire(import.meta.url)('../../kong/plugins/keypool.cjs') as {
      Schema: Array<Record<string, { match?: string; match_none?: Array<{ pattern: string }>; len_max?: number }>>;
    };
    const provider = entry.Schema[0]?.['provider'] ?? {};
    const samples = ['openai', 'azure-openai', 'azure_east', 'a-1', 'a-', 'OpenAI', '-x', 'open ai', 'x:y', '', 'a'.repeat(64), 'a'.repeat(65)];
    const none = (provider.match_none ?? []).map((rule) => `not string.find(line, ${toLua(rule.pattern)})`).join(' and ');
    const script = `for line in io.lines() do
      local ok = #line <= ${provider.len_max ?? 0} and string.find(line, ${toLua(provider.match ?? '')}) ${none ? `and ${none}` : ''}
      io.write(ok and "1" or "0")
    end`;
    const run = spawnSync('luajit', ['-e', script], { input: samples.join('\n') + '\n', encoding: 'utf8' });
    const luaVerdicts = run.stdout.split('').map((c) => c === '1');
    const tsVerdicts = samples.map((sample) => parseKongConfig({ provider: sample }).ok);
    expect(luaVerdicts).toEqual(tsVerdicts);
    expect(tsVerdicts.filter(Boolean)).toHaveLength(4);
  });
});

test.runIf(REQUIRE_KONG_TOOLS)('luajit is installed (KEYPOOL_REQUIRE_KONG_TOOLS=1)', () => {
  expect(HAVE_LUAJIT).toBe(true);
});

describe('kong.yml carries the guard', () => {
  const services = readKongYml().services;

  test('every service with keypool has the post-function guard, identical to kong/guard.lua', () => {
    const withKeypool = services.filter((service) => service.plugins?.some((plugin) => plugin.name === 'keypool'));
    expect(withKeypool.map((service) => service.name)).toEqual(['openai', 'anthropic']);
    for (const service of withKeypool) {
      const guards = service.plugins?.filter((plugin) => plugin.name === 'post-function') ?? [];
      expect(guards).toHaveLength(1);
      expect(guards[0]?.config).toEqual({ access: [GUARD_SOURCE] });
    }
  });
});
