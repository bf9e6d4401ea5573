// Decisions and upstream answers driven through the real Engine, read back from GET /metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeypoolMetrics } from '../../src/admin/metrics.js';
import { startHarness, UPSTREAM_KEYS, type Harness } from './harness.js';

let h: Harness;
let clientKey: string;

beforeAll(async () => {
  h = await startHarness();
  for (const name of ['m-alpha', 'm-beta']) {
    const created = await h.api('POST', '/admin/providers/openai/accounts', { body: { name, api_key: UPSTREAM_KEYS.good } });
    expect(created.status).toBe(201);
  }
  const key = await h.api('POST', '/admin/keys', { body: { name: 'metrics-client' } });
  clientKey = key.json.api_key;
  await h.holder.reload();
});

afterAll(async () => {
  await h?.close();
});

/** Value of one sample in the text exposition; undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[3] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[4]);
  }
  return undefined;
}

async function scrape(): Promise<string> {
  const response = await h.api('GET', '/metrics', { token: null });
  expect(response.status).toBe(200);
  return response.text;
}

const request = (headers: Record<string, string>) => ({ headers, clientAddress: '10.1.2.3', provider: 'openai' });

describe('metrics', () => {
  it('counts decisions by outcome and deny code, with a latency histogram', async () => {
    const allowed = [];
    for (let i = 0; i < 3; i++) allowed.push(await h.engine.decide(request({ authorization: `Bearer ${clientKey}` })));
    await h.engine.decide(request({}));
    await h.engine.decide(request({ 'x-api-key': 'kp_000000000000000000000000000000000000unknown' }));
    await h.engine.decide({ ...request({ authorization: `Bearer ${clientKey}` }), provider: 'nonexistent' });
    for (const outcome of allowed) expect(outcome.decision.kind).toBe('allow');

    const text = await scrape();
    expect(sample(text, 'keypool_decisions_total', { outcome: 'allow', code: 'none' })).toBe(3);
    expect(sample(text, 'keypool_decisions_total', { outcome: 'deny', code: 'missing_api_key' })).toBe(1);
    expect(sample(text, 'keypool_decisions_total', { outcome: 'deny', code: 'invalid_api_key' })).toBe(1);
    expect(sample(text, 'keypool_decisions_total', { outcome: 'deny', code: 'unknown_provider' })).toBe(1);
    expect(sample(text, 'keypool_decision_duration_seconds_count', { outcome: 'allow' })).toBe(3);
    expect(sample(text, 'keypool_decision_duration_seconds_count', { outcome: 'deny' })).toBe(3);
    expect(sample(text, 'keypool_decision_duration_seconds_bucket', { outcome: 'allow', le: '+Inf' })).toBe(3);

    // Three admitted requests still in flight, spread over the two accounts by round-robin.
    const inFlight = (sample(text, 'keypool_account_in_flight', { provider: 'openai', account: 'm-alpha' }) ?? 0) +
      (sample(text, 'keypool_account_in_flight', { provider: 'openai', account: 'm-beta' }) ?? 0);
    expect(inFlight).toBe(3);
    for (const outcome of allowed) if (outcome.ticket) h.engine.release(outcome.ticket);
    const released = await scrape();
    expect(sample(released, 'keypool_account_in_flight', { provider: 'openai', account: 'm-alpha' })).toBe(0);
  });

  it('counts 429s and rejected credentials per account name and shows cooldown, remaining and health', async () => {
    const first = await h.engine.decide(request({ authorization: `Bearer ${clientKey}` }));
    expect(first.ticket).not.toBeNull();
    const limitedAccount = first.ticket!.accountName;
    h.engine.observe(first.ticket!, 429, { 'retry-after': '10', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-remaining-tokens': '1234' });
    h.engine.release(first.ticket!);

    const second = await h.engine.decide(request({ authorization: `Bearer ${clientKey}` }));
    const invalidAccount = second.ticket!.accountName;
    expect(invalidAccount).not.toBe(limitedAccount);
    h.engine.observe(second.ticket!, 401, {});
    h.engine.release(second.ticket!);

    const text = await scrape();
    expect(sample(text, 'keypool_upstream_rate_limited_total', { provider: 'openai', account: limitedAccount })).toBe(1);
    expect(sample(text, 'keypool_upstream_invalid_total', { provider: 'openai', account: invalidAccount })).toBe(1);
    expect(sample(text, 'keypool_account_cooldown_seconds', { provider: 'openai', account: limitedAccount })).toBe(10);
    expect(sample(text, 'keypool_account_remaining_requests', { provider: 'openai', account: limitedAccount })).toBe(0);
    expect(sample(text, 'keypool_account_remaining_tokens', { provider: 'openai', account: limitedAccount })).toBe(1234);
    expect(sample(text, 'keypool_account_health_state', { provider: 'openai', account: invalidAccount, state: 'invalid' })).toBe(1);
    expect(sample(text, 'keypool_account_health_state', { provider: 'openai', account: invalidAccount, state: 'healthy' })).toBe(0);

    // The cooldown counts down with the clock.
    h.clock.advance(4_000);
    try {
      expect(sample(await scrape(), 'keypool_account_cooldown_seconds', { provider: 'openai', account: limitedAccount })).toBe(6);
    } finally {
      h.clock.advance(-4_000);
    }
  });

  it('reports snapshot, breaker, dropped-write and admin request metrics', async () => {
    for (let i = 0; i < 1005; i++) h.writes.audit({ keyId: null, action: 'config_set', actor: 'test', metadata: {} });
    await h.api('GET', '/admin/keys');
    // A reload the previous test's changes set off may land around the scrape: the scraped version lies between the
    // versions held just before and just after it.
    const versionBefore = h.holder.current()!.version;
    const text = await scrape();
    const versionAfter = h.holder.current()!.version;
    expect(sample(text, 'keypool_snapshot_version')).toBeGreaterThanOrEqual(versionBefore);
    expect(sample(text, 'keypool_snapshot_version')).toBeLessThanOrEqual(versionAfter);
    expect(sample(text, 'keypool_snapshot_age_seconds')).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'keypool_snapshot_reload_failures_total')).toBe(0);
    expect(sample(text, 'keypool_breaker_state', { breaker: 'state_store', state: 'closed' })).toBe(1);
    expect(sample(text, 'keypool_breaker_state', { breaker: 'database', state: 'open' })).toBe(0);
    const audit = { kind: 'audit', reason: 'buffer_full' };
    expect(sample(text, 'keypool_dropped_writes_total', audit)).toBeGreaterThan(0);
    expect(sample(text, 'keypool_dropped_writes_total', { kind: 'usage', reason: 'rejected' })).toBe(0);
    expect(sample(text, 'keypool_admin_requests_total', { method: 'GET', route: '/admin/keys', status: '200' })).toBeGreaterThanOrEqual(1);
    // Monotonic: a second scrape does not add the same drops again.
    const dropped = sample(text, 'keypool_dropped_writes_total', audit);
    expect(sample(await scrape(), 'keypool_dropped_writes_total', audit)).toBe(dropped);
  });

  it('labels accounts by name only: no key, key id or account id appears', async () => {
    const text = await scrape();
    expect(text).not.toContain(clientKey);
    expect(text).not.toContain(UPSTREAM_KEYS.good);
    const accounts = await h.repository.accounts.list({ providerSlug: 'openai' });
    for (const account of accounts) expect(text).not.toContain(account.id);
  });
});

describe('metrics access', () => {
  it('requires the token for /metrics when configured so', async () => {
    const guarded = await startHarness({ metricsAccess: 'token' });
    try {
      expect((await guarded.api('GET', '/metrics', { token: null })).status).toBe(401);
      expect((await guarded.api('GET', '/metrics')).status).toBe(200);
    } finally {
      await guarded.close();
    }
  });
});

describe('admission queue metrics', () => {
  it('waiting requests per priority, wait time by priority and outcome, and the ends of waits', async () => {
    const metrics = new KeypoolMetrics({ processMetrics: false });
    metrics.onQueueEnter(0);
    metrics.onQueueEnter(7);
    metrics.onQueueEnter(7);
    metrics.onQueueLeave(0, 'admitted', 40);
    metrics.onQueueLeave(7, 'timed_out', 5_000);
    metrics.onQueueLeave(3, 'full', 0);
    const text = await metrics.registry.metrics();
    expect(sample(text, 'keypool_queue_waiting', { priority: '0' })).toBe(0);
    expect(sample(text, 'keypool_queue_waiting', { priority: '7' })).toBe(1);
    expect(sample(text, 'keypool_queue_results_total', { priority: '0', outcome: 'admitted' })).toBe(1);
    expect(sample(text, 'keypool_queue_results_total', { priority: '7', outcome: 'timed_out' })).toBe(1);
    expect(sample(text, 'keypool_queue_results_total', { priority: '3', outcome: 'full' })).toBe(1);
    expect(sample(text, 'keypool_queue_wait_seconds_count', { priority: '7', outcome: 'timed_out' })).toBe(1);
    expect(sample(text, 'keypool_queue_wait_seconds_bucket', { priority: '0', outcome: 'admitted', le: '0.05' })).toBe(1);
    expect(sample(text, 'keypool_queue_wait_seconds_bucket', { priority: '7', outcome: 'timed_out', le: '2.5' })).toBe(0);
    // A request refused at the door never waited: no wait time, no waiting gauge moved.
    expect(sample(text, 'keypool_queue_wait_seconds_count', { priority: '3', outcome: 'full' })).toBeUndefined();
    expect(sample(text, 'keypool_queue_waiting', { priority: '3' })).toBeUndefined();
  });
});

describe('keypool_upstream_quota_exhausted_total', () => {
  it('counts answers saying an account has no credit left, per account, apart from 429s and rejected keys', async () => {
    const metrics = new KeypoolMetrics({ processMetrics: false });
    metrics.onObservation('openai', 'org-a', 'quota_exhausted');
    metrics.onObservation('openai', 'org-a', 'quota_exhausted');
    metrics.onObservation('openai', 'org-a', 'rate_limited');
    const text = await metrics.registry.metrics();
    expect(sample(text, 'keypool_upstream_quota_exhausted_total', { provider: 'openai', account: 'org-a' })).toBe(2);
    expect(sample(text, 'keypool_upstream_rate_limited_total', { provider: 'openai', account: 'org-a' })).toBe(1);
  });
});
