// The admin routes behind the dashboard: overview (accounts by state, recent decisions), the paged pool view with
// live state, usage series aggregated in the database, and key search with keyset pagination.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_ACTIONS } from '../../src/admin/routes/audit.js';
import { MATCH_TYPES } from '../../src/core/types.js';
import { DecisionActivity, OTHER_PROVIDER } from '../../src/admin/activity.js';
import { accountState } from '../../src/admin/routes/dashboard.js';
import type { AccountStateView } from '../../src/ports.js';
import { ManualClock, startHarness, type Harness } from './harness.js';

const LEARNED_NONE = { requestsRemaining: null, tokensRemaining: null, requestsLimit: null, tokensLimit: null, requestsResetAtMs: null, tokensResetAtMs: null };

describe('dashboard admin routes', () => {
  let h: Harness;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    h = await startHarness();
    for (let i = 0; i < 12; i++) {
      const res = await h.api('POST', '/admin/providers/openai/accounts', { body: { name: `acct-${String(i).padStart(2, '0')}`, api_key: `sk-dash-${i}-0000000000000000${i}` } });
      expect(res.status).toBe(201);
      ids[res.json.account.name] = res.json.account.id;
    }
    await h.api('POST', `/admin/providers/openai/accounts/${ids['acct-11']}/disable`, { body: {} });
    const nowMs = h.clock.nowMs();
    h.state.observe('openai', ids['acct-00']!, { outcome: 'rate_limited', status: 429, cooldownUntilMs: nowMs + 60_000, learned: LEARNED_NONE }, nowMs);
    h.deps.activity.onObservation(ids['acct-00']!, 'rate_limited');
    h.deps.activity.onDecision('allow', 'openai');
    h.deps.activity.onDecision('allow', 'openai');
    h.deps.activity.onDecision('rate_limited', 'openai');
  });
  afterAll(async () => {
    await h.close();
  });

  it('overview: accounts by state and recent decisions per provider', async () => {
    const res = await h.api('GET', '/admin/dashboard/overview?window_seconds=30');
    expect(res.status).toBe(200);
    const openai = (res.json.providers as Array<{ slug: string; strategy: unknown; accounts: unknown; activity: { per_second: unknown[] } }>).find(
      (p) => p.slug === 'openai',
    )!;
    expect(openai.accounts).toMatchObject({ total: 12, disabled: 1, cooling: 1, healthy: 10 });
    expect(openai.activity).toMatchObject({ decisions: 3, allows: 2, denials: { rate_limited: 1 } });
    expect(openai.activity.per_second).toHaveLength(30);
    expect(openai.strategy).toBeTypeOf('string');
    expect((await h.api('GET', '/admin/dashboard/overview?window_seconds=100000')).status).toBe(400);
  });

  it('pool: pages by name with live state for the page, and filters by name', async () => {
    const first = await h.api('GET', '/admin/providers/openai/pool?limit=5');
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ total: 12, offset: 0, limit: 5 });
    expect(first.json.items.map((a: { name: string }) => a.name)).toEqual(['acct-00', 'acct-01', 'acct-02', 'acct-03', 'acct-04']);
    const cooling = first.json.items[0];
    expect(cooling.state).toBe('cooling');
    expect(cooling.live.cooldown_seconds_left).toBe(60);
    expect(cooling.last_429_at).toBe(new Date(h.clock.nowMs()).toISOString());
    expect(JSON.stringify(first.json)).not.toMatch(/sk-dash/);
    const last = await h.api('GET', '/admin/providers/openai/pool?limit=5&offset=10');
    expect(last.json.items.map((a: { name: string; state: string }) => [a.name, a.state])).toEqual([
      ['acct-10', 'healthy'],
      ['acct-11', 'disabled'],
    ]);
    const filtered = await h.api('GET', '/admin/providers/openai/pool?q=CCT-1');
    expect(filtered.json.total).toBe(2);
    expect((await h.api('GET', '/admin/providers/nope/pool')).status).toBe(404);
  });

  it("pool: accounts of one quota scope all show the scope's cooldown (what admission sees), stats too", async () => {
    const scoped: string[] = [];
    for (const name of ['scoped-a', 'scoped-b']) {
      const res = await h.api('POST', '/admin/providers/anthropic/accounts', { body: { name, api_key: `sk-ant-${name}-00000000000`, scope: 'workspace-1' } });
      expect(res.status).toBe(201);
      scoped.push(res.json.account.id);
    }
    const nowMs = h.clock.nowMs();
    const learned = { ...LEARNED_NONE, requestsLimit: 50, requestsRemaining: 0, requestsResetAtMs: nowMs + 30_000 };
    await h.state.observe('anthropic', scoped[0]!, { outcome: 'rate_limited', status: 429, cooldownUntilMs: nowMs + 30_000, learned }, nowMs, null, {
      scope: 'workspace-1',
      model: null,
    });
    const pool = await h.api('GET', '/admin/providers/anthropic/pool?q=scoped');
    expect(pool.json.items.map((a: { name: string; state: string; live: { cooldown_seconds_left: number } }) => [a.name, a.state, a.live.cooldown_seconds_left])).toEqual([
      ['scoped-a', 'cooling', 30],
      ['scoped-b', 'cooling', 30],
    ]);
    const stats = await h.api('GET', `/admin/providers/anthropic/accounts/${scoped[1]}/stats`);
    expect(stats.status).toBe(200);
    expect(stats.json.live).toMatchObject({ cooldown_until: new Date(nowMs + 30_000).toISOString(), remaining_requests: 0, limit_requests: 50 });
  });

  it('usage series: minute buckets summed per step in the database, gaps filled with zeros', async () => {
    const nowMs = h.clock.nowMs();
    const minute = (ago: number) => new Date(Math.floor(nowMs / 60_000) * 60_000 - ago * 60_000);
    const bucket = (accountId: string, start: Date, requests: number) => ({
      accountId,
      bucketStart: start,
      requests,
      successes: requests - 1,
      rateLimited: 1,
      clientErrors: 0,
      serverErrors: 0,
      inputTokens: 10 * requests,
      outputTokens: 5 * requests,
      cachedInputTokens: 0,
      cacheCreationInputTokens: 0,
      latencyMsSum: 100 * requests,
    });
    await h.repository.usage.add([bucket(ids['acct-01']!, minute(2), 4), bucket(ids['acct-02']!, minute(2), 6), bucket(ids['acct-01']!, minute(30), 3)]);

    const hour = await h.api('GET', '/admin/usage/series?provider=openai&range=1h');
    expect(hour.status).toBe(200);
    expect(hour.json.step_seconds).toBe(60);
    const s = hour.json.series as Record<string, number[]>;
    expect(s.t).toHaveLength(60);
    expect(s.requests!.reduce((a, b) => a + b, 0)).toBe(13);
    const at = s.t!.indexOf(minute(2).getTime() / 1000);
    expect(s.requests![at]).toBe(10);
    expect(s.successes![at]).toBe(8);
    expect(s.rate_limited![at]).toBe(2);
    expect(s.tokens![at]).toBe(150);
    expect(s.latency_ms_avg![at]).toBe(100);

    const one = await h.api('GET', `/admin/usage/series?account_id=${ids['acct-01']}&range=1d`);
    expect(one.json.step_seconds).toBe(300);
    expect(one.json.series.t).toHaveLength(288);
    expect(one.json.series.requests.reduce((a: number, b: number) => a + b, 0)).toBe(7);
    expect((await h.api('GET', '/admin/usage/series?range=1w')).status).toBe(400);
    expect((await h.api('GET', '/admin/usage/series?provider=openai&range=2y')).status).toBe(400);
  });

  it('keys: server-side search and keyset pagination by name', async () => {
    for (const name of ['team-a', 'team-b', 'team-c', 'other-x', 'team_d']) {
      expect((await h.api('POST', '/admin/keys', { body: { name } })).status).toBe(201);
    }
    const page1 = await h.api('GET', '/admin/keys?q=team&limit=2');
    expect(page1.json.items.map((k: { name: string }) => k.name)).toEqual(['team-a', 'team-b']);
    expect(page1.json.next_cursor).toBeTypeOf('string');
    const page2 = await h.api('GET', `/admin/keys?q=team&limit=2&cursor=${page1.json.next_cursor}`);
    expect(page2.json.items.map((k: { name: string }) => k.name)).toEqual(['team-c', 'team_d']);
    const page3 = await h.api('GET', `/admin/keys?q=team&limit=2&cursor=${page2.json.next_cursor}`);
    expect(page3.json).toMatchObject({ items: [], next_cursor: null });
    // LIKE wildcards in the search are literal.
    const underscore = await h.api('GET', '/admin/keys?q=m_d');
    expect(underscore.json.items.map((k: { name: string }) => k.name)).toEqual(['team_d']);
    // The display prefix is searchable too.
    const prefix = page1.json.items[0].key_prefix as string;
    expect((await h.api('GET', `/admin/keys?q=${encodeURIComponent(prefix)}`)).json.items.map((k: { name: string }) => k.name)).toContain('team-a');
    expect((await h.api('GET', '/admin/keys?cursor=not%20base64')).status).toBe(400);
  });
});

describe('account state shown on the dashboard', () => {
  const view = (over: Partial<AccountStateView>): AccountStateView => ({
    accountId: 'a',
    health: 'healthy',
    inFlight: 0,
    cooldownUntilMs: null,
    circuitOpenUntilMs: null,
    requestsInWindow: 0,
    invalid: false,
    learned: LEARNED_NONE,
    ...over,
  });
  it.each([
    ['disabled', 'disabled', view({ cooldownUntilMs: 2_000 })],
    ['invalid', 'invalid', view({})],
    ['active', 'invalid', view({ invalid: true })],
    ['active', 'cooling', view({ cooldownUntilMs: 2_000, health: 'degraded' })],
    ['active', 'degraded', view({ cooldownUntilMs: 1_000, health: 'degraded' })],
    ['active', 'unhealthy', view({ circuitOpenUntilMs: 5_000 })],
    ['active', 'healthy', view({})],
    ['active', 'unknown', undefined],
  ] as const)('%s account, live %# -> %s', (status, expected, live) => {
    expect(accountState(status, live, 1_000)).toBe(expected);
  });
});

describe('DecisionActivity', () => {
  it('counts per provider per second over a sliding window and forgets older seconds', () => {
    const clock = new ManualClock(1_000_000);
    const activity = new DecisionActivity(clock, { historySeconds: 10 });
    activity.onDecision('allow', 'openai');
    clock.advance(1_000);
    activity.onDecision('allow', 'openai');
    activity.onDecision('no_healthy_account', 'openai');
    expect(activity.summary('openai', 5)).toMatchObject({ decisions: 3, allows: 2, denials: { no_healthy_account: 1 }, perSecond: [0, 0, 0, 1, 2] });
    clock.advance(10_000);
    expect(activity.summary('openai', 10).decisions).toBe(0);
    activity.onDecision('allow', 'openai'); // reuses a slot of the ring: the old count is gone
    expect(activity.summary('openai', 10).decisions).toBe(1);
  });

  it('bounds provider names and remembered accounts', () => {
    const clock = new ManualClock(0);
    const activity = new DecisionActivity(clock, { maxProviders: 2, maxAccounts: 2 });
    for (const name of ['a', 'b', 'c', 'd', 'x'.repeat(100)]) activity.onDecision('unknown_provider', name);
    expect(activity.seenProviders()).toEqual(['a', 'b']);
    expect(activity.summary(OTHER_PROVIDER, 1).decisions).toBe(3);
    activity.onObservation('acc-1', 'rate_limited');
    activity.onObservation('acc-2', 'invalid_credential');
    activity.onObservation('acc-3', 'success');
    activity.onObservation('acc-4', 'rate_limited');
    expect(activity.accountSignals('acc-1')).toEqual({ last429AtMs: null, last401AtMs: null });
    expect(activity.accountSignals('acc-2')).toEqual({ last429AtMs: null, last401AtMs: 0 });
    expect(activity.accountSignals('acc-4')).toEqual({ last429AtMs: 0, last401AtMs: null });
  });
});

describe('lists the dashboard repeats from the server', () => {
  // The page is bundled without the server's modules; these lists must stay the server's.
  const source = (file: string) => readFileSync(fileURLToPath(new URL(`../../web/views/${file}`, import.meta.url)), 'utf8');
  const quoted = (text: string, name: string) => {
    const body = new RegExp(`const ${name} = \\[([^\\]]*)\\]`).exec(text)?.[1] ?? '';
    return [...body.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]);
  };

  it('audit actions and match types', () => {
    expect(quoted(source('audit.js'), 'ACTIONS')).toEqual([...AUDIT_ACTIONS]);
    expect(quoted(source('mappings.js'), 'MATCH_TYPES')).toEqual([...MATCH_TYPES]);
  });
});
