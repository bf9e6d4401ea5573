// Read-only views the dashboard needs and the other routes do not give in one call: the pool overview per provider,
// one provider's accounts with their live state (paged, for pools of thousands), and usage series aggregated in
// the database. Plain admin API routes, usable by any client.
import { scopesOf } from '../../core/learned-state.js';
import type { AccountStateView } from '../../ports.js';
import type { DecisionActivity } from '../activity.js';
import type { AdminDeps } from '../deps.js';
import { badRequest } from '../http-errors.js';
import { onlyQuery, queryChoice, queryInt, queryString, queryUuid } from '../input.js';
import { presentAccount, presentLiveState, presentProvider } from '../present.js';
import type { RouteDef } from '../router.js';
import type { AccountRow } from '../../catalog/accounts/rows.js';
import type { UsagePoint } from '../../catalog/usage/dao.js';

/** What an operator needs to know about an account at a glance, most severe first. */
export const ACCOUNT_STATES = ['disabled', 'invalid', 'cooling', 'unhealthy', 'degraded', 'healthy', 'unknown'] as const;
export type AccountState = (typeof ACCOUNT_STATES)[number];

/** Usage ranges: the window and the width of one point (minutes for an hour, coarser beyond, ~300 points at most). */
export const USAGE_RANGES = {
  '1h': { windowSeconds: 3_600, stepSeconds: 60 },
  '1d': { windowSeconds: 86_400, stepSeconds: 300 },
  '1w': { windowSeconds: 604_800, stepSeconds: 1_800 },
} as const;
type UsageRange = keyof typeof USAGE_RANGES;

const DEFAULT_ACTIVITY_WINDOW_SECONDS = 60;
const DEFAULT_POOL_PAGE = 100;
const MAX_POOL_PAGE = 500;

/**
 * The state shown for an account: its stored status first (an operator's decision), then what the live state
 * says. `unknown` when the live state could not be read (shared store unreachable) for an active account.
 */
export function accountState(status: AccountRow['status'], view: AccountStateView | undefined, nowMs: number): AccountState {
  if (status === 'disabled') return 'disabled';
  if (status === 'invalid' || view?.invalid === true) return 'invalid';
  if (view === undefined) return 'unknown';
  if (view.cooldownUntilMs !== null && view.cooldownUntilMs > nowMs) return 'cooling';
  if (view.health === 'unhealthy' || (view.circuitOpenUntilMs !== null && view.circuitOpenUntilMs > nowMs)) return 'unhealthy';
  return view.health;
}

export function dashboardRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: '/admin/dashboard/overview',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['window_seconds']);
        const activity = deps.activity;
        const windowSeconds = queryInt(ctx, 'window_seconds', 1, activity.historySeconds) ?? DEFAULT_ACTIVITY_WINDOW_SECONDS;
        const nowMs = deps.clock.nowMs();
        const [providers, accounts] = await Promise.all([deps.repository.providers.list(), deps.repository.accounts.list()]);
        const items = await Promise.all(
          providers.map(async (provider) => {
            const rows = accounts.filter((a) => a.providerSlug === provider.slug);
            const views = await liveViews(deps, provider.slug, rows, nowMs);
            const states: Record<AccountState, number> = Object.fromEntries(ACCOUNT_STATES.map((s) => [s, 0])) as Record<AccountState, number>;
            for (const row of rows) states[accountState(row.status, views.get(row.id), nowMs)] += 1;
            return {
              ...presentProvider(provider),
              strategy: deps.snapshots.current()?.pools.get(provider.slug)?.strategy ?? provider.defaultStrategy,
              accounts: { total: rows.length, ...states },
              activity: presentActivity(activity, provider.slug, windowSeconds),
            };
          }),
        );
        return { status: 200, body: { window_seconds: windowSeconds, providers: items } };
      },
    },
    {
      method: 'GET',
      path: '/admin/providers/:slug/pool',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['q', 'offset', 'limit']);
        const search = queryString(ctx, 'q', 200)?.toLowerCase();
        const offset = queryInt(ctx, 'offset', 0, 1_000_000) ?? 0;
        const limit = queryInt(ctx, 'limit', 1, MAX_POOL_PAGE) ?? DEFAULT_POOL_PAGE;
        const provider = await deps.repository.providers.getBySlug(ctx.params.slug!);
        const all = await deps.repository.accounts.list({ providerSlug: provider.slug });
        const matching = search === undefined ? all : all.filter((a) => a.name.toLowerCase().includes(search));
        const page = matching.slice(offset, offset + limit);
        const nowMs = deps.clock.nowMs();
        // Only the page's accounts are read from the rate state: a pool of thousands costs one page per refresh.
        const views = await liveViews(deps, provider.slug, page, nowMs);
        const items = page.map((row) => {
          const view = views.get(row.id);
          const signals = deps.activity.accountSignals(row.id);
          return {
            ...presentAccount(row),
            state: accountState(row.status, view, nowMs),
            live: presentLiveState(view, nowMs),
            last_429_at: isoOrNull(signals.last429AtMs),
            last_401_at: isoOrNull(signals.last401AtMs),
          };
        });
        return { status: 200, body: { provider: provider.slug, total: matching.length, offset, limit, items } };
      },
    },
    {
      method: 'GET',
      path: '/admin/usage/series',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['provider', 'account_id', 'range']);
        const range: UsageRange = queryChoice(ctx, 'range', Object.keys(USAGE_RANGES) as UsageRange[]) ?? '1h';
        const accountId = queryUuid(ctx, 'account_id');
        const providerSlug = queryString(ctx, 'provider', 64);
        if (accountId === undefined && providerSlug === undefined) {
          throw badRequest('invalid_parameter', 'give account_id or provider', 'account_id');
        }
        if (providerSlug !== undefined) await deps.repository.providers.getBySlug(providerSlug);
        const { windowSeconds, stepSeconds } = USAGE_RANGES[range];
        const stepMs = stepSeconds * 1000;
        const toMs = Math.ceil((deps.clock.nowMs() + 1) / stepMs) * stepMs;
        const fromMs = toMs - windowSeconds * 1000;
        const points = await deps.repository.usage.series({ accountId, providerSlug, from: new Date(fromMs), to: new Date(toMs), stepSeconds });
        return {
          status: 200,
          body: {
            range,
            step_seconds: stepSeconds,
            from: new Date(fromMs).toISOString(),
            to: new Date(toMs).toISOString(),
            series: filledSeries(points, fromMs, toMs, stepMs),
          },
        };
      },
    },
  ];
}

/** Live state of active accounts by id; empty when the state store cannot be read (the views say `unknown`). */
async function liveViews(deps: AdminDeps, slug: string, rows: readonly AccountRow[], nowMs: number): Promise<Map<string, AccountStateView>> {
  const active = rows.filter((r) => r.status === 'active');
  if (active.length === 0) return new Map();
  try {
    const views = await deps.state.inspect(slug, active.map((r) => r.id), nowMs, scopesOf(active));
    return new Map(views.map((v) => [v.accountId, v]));
  } catch {
    return new Map();
  }
}

function presentActivity(activity: DecisionActivity, slug: string, windowSeconds: number): Record<string, unknown> {
  const summary = activity.summary(slug, windowSeconds);
  return {
    decisions: summary.decisions,
    allows: summary.allows,
    decisions_per_second: Math.round(summary.decisionsPerSecond * 100) / 100,
    denials: summary.denials,
    per_second: summary.perSecond,
  };
}

/** Columnar series (what a chart takes), one entry per step from..to, zero where nothing was recorded. */
function filledSeries(points: readonly UsagePoint[], fromMs: number, toMs: number, stepMs: number): Record<string, number[]> {
  const byStart = new Map(points.map((p) => [p.bucketStart.getTime(), p]));
  const series: Record<string, number[]> = { t: [], requests: [], successes: [], rate_limited: [], errors: [], tokens: [], latency_ms_avg: [] };
  for (let t = fromMs; t < toMs; t += stepMs) {
    const p = byStart.get(t);
    series.t!.push(t / 1000);
    series.requests!.push(p?.requests ?? 0);
    series.successes!.push(p?.successes ?? 0);
    series.rate_limited!.push(p?.rateLimited ?? 0);
    series.errors!.push((p?.clientErrors ?? 0) + (p?.serverErrors ?? 0));
    series.tokens!.push((p?.inputTokens ?? 0) + (p?.outputTokens ?? 0));
    series.latency_ms_avg!.push(p && p.requests > 0 ? Math.round((p.latencyMsSum / p.requests) * 10) / 10 : 0);
  }
  return series;
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
