// Tenants (a tenant id's name and request quotas) and their live usage.
import { zonedDayBounds } from '../../core/quota.js';
import { isTenantId } from '../../catalog/rules.js';
import { validateNewTenant, validateTenantPatch } from '../../catalog/tenants/schema.js';
import type { AdminDeps } from '../deps.js';
import { badRequest, HttpError } from '../http-errors.js';
import { bodyInput, onlyQuery, queryInstant, valid } from '../input.js';
import { presentTenant } from '../present.js';
import type { RequestContext, RouteDef } from '../router.js';

const BASE = '/admin/tenants';
/** Token totals cover the last day unless `from` says otherwise, and at most a year (summed in the database). */
const DEFAULT_TOKENS_WINDOW_MS = 86_400_000;
const MAX_TOKENS_WINDOW_MS = 366 * 86_400_000;

function tenantId(ctx: RequestContext): string {
  const id = ctx.params.tenant!;
  if (!isTenantId(id)) throw badRequest('invalid_parameter', 'tenant id must be 1-64 characters of A-Z a-z 0-9 . _ -', 'id');
  return id;
}

export function tenantRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: BASE,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        return { status: 200, body: { items: (await deps.repository.tenants.list()).map(presentTenant) } };
      },
    },
    {
      method: 'POST',
      path: BASE,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const tenant = valid(validateNewTenant(bodyInput(ctx)));
        const row = await deps.repository.tenants.create(tenant, ctx.actor);
        return { status: 201, body: { tenant: presentTenant(row) }, headers: { location: `${BASE}/${encodeURIComponent(row.id)}` } };
      },
    },
    {
      method: 'GET',
      path: `${BASE}/:tenant`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        return { status: 200, body: { tenant: presentTenant(await deps.repository.tenants.get(tenantId(ctx))) } };
      },
    },
    {
      method: 'PATCH',
      path: `${BASE}/:tenant`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const id = tenantId(ctx);
        const patch = valid(validateTenantPatch(bodyInput(ctx)));
        return { status: 200, body: { tenant: presentTenant(await deps.repository.tenants.update(id, patch, ctx.actor)) } };
      },
    },
    {
      method: 'DELETE',
      path: `${BASE}/:tenant`,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        await deps.repository.tenants.delete(tenantId(ctx), ctx.actor);
        return { status: 204 };
      },
    },
    {
      method: 'GET',
      path: `${BASE}/:tenant/usage`,
      access: 'token',
      // The shared counters (every replica, when the rate state is Redis) of the tenant's limited windows, this
      // replica's admission outcomes since it started, and the tenant's tokens and cost in [from, to) (every replica,
      // from token_usage_stats: what the write buffer has flushed, so the last seconds may be missing).
      handler: async (ctx) => {
        onlyQuery(ctx, ['from', 'to']);
        const to = queryInstant(ctx, 'to') ?? new Date(deps.clock.nowMs());
        const from = queryInstant(ctx, 'from') ?? new Date(to.getTime() - DEFAULT_TOKENS_WINDOW_MS);
        if (from.getTime() >= to.getTime()) throw badRequest('invalid_parameter', 'from must be before to', 'from');
        if (to.getTime() - from.getTime() > MAX_TOKENS_WINDOW_MS) throw badRequest('invalid_parameter', 'the window from..to may span at most 366 days', 'from');
        const row = await deps.repository.tenants.get(tenantId(ctx));
        const inspect = deps.state.inspectQuota;
        if (inspect === undefined) throw new HttpError(501, 'not_supported', 'this rate-state store cannot report quota usage');
        const nowMs = deps.clock.nowMs();
        const subject = { scope: 'tenant', id: row.id, rpmLimit: row.rpmLimit, rpdLimit: row.rpdLimit, tpmLimit: row.tpmLimit ?? null, tpdLimit: row.tpdLimit ?? null } as const;
        const usage = await inspect.call(deps.state, subject, nowMs, zonedDayBounds(nowMs, deps.quotaTimeZone));
        const counts = deps.metrics.tenantCounts(row.id);
        const tokens = await deps.repository.tokenUsage.totals({ tenantId: row.id, from, to });
        return {
          status: 200,
          body: {
            tenant_id: row.id,
            // Counted only while a limit is set: an unlimited window reads null.
            minute: { used: row.rpmLimit === null ? null : usage.minute, limit: row.rpmLimit },
            day: {
              used: row.rpdLimit === null ? null : usage.day,
              limit: row.rpdLimit,
              starts_at: new Date(usage.dayStartMs).toISOString(),
              ends_at: new Date(usage.dayEndMs).toISOString(),
              time_zone: deps.quotaTimeZone,
            },
            // Token quotas now: reserved estimates, corrected to actual usage as it is reported (README, Exact TPM).
            token_quota: {
              minute: { used: (row.tpmLimit ?? null) === null ? null : (usage.tokenMinute ?? 0), limit: row.tpmLimit ?? null },
              day: { used: (row.tpdLimit ?? null) === null ? null : (usage.tokenDay ?? 0), limit: row.tpdLimit ?? null },
            },
            this_replica: { admitted: counts.admitted, refused: counts.refused },
            tokens: {
              from: from.toISOString(),
              to: to.toISOString(),
              // Responses whose usage was recorded, and of those the ones estimated from streamed text.
              requests: tokens.requests,
              estimated_requests: tokens.estimatedRequests,
              input_tokens: tokens.inputTokens,
              output_tokens: tokens.outputTokens,
              cached_input_tokens: tokens.cachedInputTokens,
              cache_creation_input_tokens: tokens.cacheCreationInputTokens,
              cost_usd: tokens.costUsd,
            },
          },
        };
      },
    },
  ];
}
