// Upstream provider accounts under /admin/providers/:slug/accounts. The upstream key is write-only: it goes in with
// `api_key` and only its last 4 characters ever come out.
import { scopesOf } from '../../core/learned-state.js';
import type { AccountStateView } from '../../ports.js';
import type { AdminDeps } from '../deps.js';
import { HealthCheckUnavailable } from '../health-check.js';
import { badRequest, notFound, unprocessable } from '../http-errors.js';
import { bodyInput, onlyQuery, queryChoice, queryInstant, reasonInput, valid } from '../input.js';
import { presentAccount, presentLiveState, presentUsageBucket, usageTotals } from '../present.js';
import type { RequestContext, RouteDef } from '../router.js';
import type { AccountRow } from '../../catalog/accounts/rows.js';
import { validateAccountPatch, validateNewAccount } from '../../catalog/accounts/schema.js';
import type { ProviderRow } from '../../catalog/providers/rows.js';

const BASE = '/admin/providers/:slug/accounts';
const DEFAULT_STATS_WINDOW_MS = 3_600_000;
/** Longest stats window: 31 days of minute buckets is ~45k rows, the most one answer should carry. */
const MAX_STATS_WINDOW_MS = 31 * 86_400_000;
const STATUSES = ['active', 'disabled', 'invalid'] as const;

export function accountRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: BASE,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['status']);
        const status = queryChoice(ctx, 'status', STATUSES);
        const provider = await deps.repository.providers.getBySlug(ctx.params.slug!);
        const rows = await deps.repository.accounts.list({ providerSlug: provider.slug, status });
        return { status: 200, body: { items: rows.map(presentAccount) } };
      },
    },
    {
      method: 'POST',
      path: BASE,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const slug = ctx.params.slug!;
        const input = withProviderSlug(bodyInput(ctx), slug);
        const account = valid(validateNewAccount(input));
        await deps.repository.providers.getBySlug(slug);
        const row = await deps.repository.accounts.create(account, ctx.actor);
        return { status: 201, body: { account: presentAccount(row) }, headers: { location: `/admin/providers/${slug}/accounts/${row.id}` } };
      },
    },
    {
      method: 'GET',
      path: `${BASE}/:id`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        return { status: 200, body: { account: presentAccount(await accountIn(deps, ctx)) } };
      },
    },
    {
      method: 'PATCH',
      path: `${BASE}/:id`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const patch = valid(validateAccountPatch(bodyInput(ctx)));
        const current = await accountIn(deps, ctx);
        const row = await deps.repository.accounts.update(current.id, patch, ctx.actor);
        return { status: 200, body: { account: presentAccount(row) } };
      },
    },
    {
      method: 'DELETE',
      path: `${BASE}/:id`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const current = await accountIn(deps, ctx);
        await deps.repository.accounts.softDelete(current.id, ctx.actor);
        return { status: 204 };
      },
    },
    {
      method: 'POST',
      path: `${BASE}/:id/enable`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const current = await accountIn(deps, ctx);
        const row = await deps.repository.accounts.setStatus(current.id, 'active', null, ctx.actor);
        // Forget the live invalid hold, cooldown and open circuit too: the operator vouches for the account.
        await deps.state.resetAccount?.(row.providerSlug, row.id);
        return { status: 200, body: { account: presentAccount(row) } };
      },
    },
    {
      method: 'POST',
      path: `${BASE}/:id/disable`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const reason = reasonInput(ctx);
        const current = await accountIn(deps, ctx);
        const row = await deps.repository.accounts.setStatus(current.id, 'disabled', reason, ctx.actor);
        return { status: 200, body: { account: presentAccount(row) } };
      },
    },
    {
      method: 'GET',
      path: `${BASE}/:id/stats`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['from', 'to']);
        const nowMs = deps.clock.nowMs();
        const to = queryInstant(ctx, 'to') ?? new Date(nowMs);
        const from = queryInstant(ctx, 'from') ?? new Date(to.getTime() - DEFAULT_STATS_WINDOW_MS);
        if (from.getTime() >= to.getTime()) throw badRequest('invalid_parameter', 'from must be before to', 'from');
        if (to.getTime() - from.getTime() > MAX_STATS_WINDOW_MS) throw badRequest('invalid_parameter', 'the window from..to may span at most 31 days', 'from');
        const account = await accountIn(deps, ctx);
        const [buckets, live] = await Promise.all([
          deps.repository.usage.query({ accountId: account.id, from, to }),
          liveState(deps, account, nowMs),
        ]);
        return {
          status: 200,
          body: {
            account: presentAccount(account),
            from: from.toISOString(),
            to: to.toISOString(),
            totals: usageTotals(buckets),
            buckets: buckets.map(presentUsageBucket),
            live: presentLiveState(live, nowMs),
          },
        };
      },
    },
    {
      method: 'POST',
      path: `${BASE}/:id/check-health`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const account = await accountIn(deps, ctx);
        const provider = await deps.repository.providers.getBySlug(account.providerSlug);
        return { status: 200, body: await checkHealth(deps, provider, account, ctx.actor) };
      },
    },
  ];
}

/** The account `:id` of provider `:slug`; 404 when either is unknown, deleted, or the account belongs elsewhere. */
async function accountIn(deps: AdminDeps, ctx: RequestContext): Promise<AccountRow> {
  const slug = ctx.params.slug!;
  const id = ctx.params.id!;
  await deps.repository.providers.getBySlug(slug);
  const account = await deps.repository.accounts.get(id);
  if (account.providerSlug !== slug) throw notFound(`account of provider ${slug}`, id);
  return account;
}

function withProviderSlug(input: unknown, slug: string): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const given = (input as { providerSlug?: unknown }).providerSlug;
  if (given !== undefined && given !== slug) {
    throw unprocessable('conflicting_fields', 'provider_slug differs from the provider in the path; leave it out', 'provider_slug');
  }
  return { ...input, providerSlug: slug };
}

async function liveState(deps: AdminDeps, account: AccountRow, nowMs: number): Promise<AccountStateView | undefined> {
  try {
    const views = await deps.state.inspect(account.providerSlug, [account.id], nowMs, scopesOf([account]));
    return views.find((v) => v.accountId === account.id);
  } catch {
    return undefined; // shared state unreachable: stats still answer with the stored usage
  }
}

/**
 * Probes the provider with the account's key and folds the answer into its live health as a proxied response would.
 * A rejected key (401/403, Gemini API_KEY_INVALID) also marks the account invalid in the store (audited).
 */
async function checkHealth(deps: AdminDeps, provider: ProviderRow, account: AccountRow, actor: string): Promise<Record<string, unknown>> {
  // Only the provider's configured base URL (health-check.ts): no account field can send the key elsewhere.
  const target = { providerSlug: provider.slug, authStyle: provider.authStyle };
  try {
    deps.healthChecker.urlFor(target);
  } catch (error) {
    if (error instanceof HealthCheckUnavailable) throw unprocessable('health_check_unavailable', error.message, null);
    throw error;
  }
  const secret = await deps.accountSecret(account);
  const result = await deps.healthChecker.probe({ ...target, secret });
  const nowMs = deps.clock.nowMs();
  const status = result.kind === 'answered' ? result.status : 0;
  const { observation, committed, invalidated } = deps.observeAccount(
    { pool: provider.slug, accountId: account.id, accountName: account.name },
    status,
    result.kind === 'answered' ? result.headers : {},
    { nowMs, source: 'health check', actor },
  );
  // Committed before the answer, like a proxied response's state change: the operator sees the state it caused.
  await committed;
  if (invalidated !== null) await invalidated;
  const accountStatus = invalidated === null ? account.status : (await deps.repository.accounts.get(account.id)).status;
  const live = await liveState(deps, account, nowMs);
  return {
    account_id: account.id,
    ok: observation.outcome === 'success',
    outcome: result.kind === 'answered' ? observation.outcome : result.kind,
    upstream_status: result.kind === 'answered' ? result.upstreamStatus : null,
    latency_ms: Math.round(result.latencyMs * 10) / 10,
    url: result.url,
    message: result.kind === 'answered' ? null : result.message,
    account_status: accountStatus,
    live: presentLiveState(live, nowMs),
  };
}
