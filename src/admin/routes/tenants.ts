// Tenants (a tenant id's name and request quotas) and their live usage.
import { zonedDayBounds } from '../../core/quota.js';
import { isTenantId } from '../../catalog/rules.js';
import { validateNewTenant, validateTenantPatch } from '../../catalog/tenants/schema.js';
import type { AdminDeps } from '../deps.js';
import { badRequest, HttpError } from '../http-errors.js';
import { bodyInput, onlyQuery, valid } from '../input.js';
import { presentTenant } from '../present.js';
import type { RequestContext, RouteDef } from '../router.js';

const BASE = '/admin/tenants';

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
      // The shared counters (every replica, when the rate state is Redis) of the tenant's limited windows, and this
      // replica's admission outcomes since it started.
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const row = await deps.repository.tenants.get(tenantId(ctx));
        const inspect = deps.state.inspectQuota;
        if (inspect === undefined) throw new HttpError(501, 'not_supported', 'this rate-state store cannot report quota usage');
        const nowMs = deps.clock.nowMs();
        const subject = { scope: 'tenant', id: row.id, rpmLimit: row.rpmLimit, rpdLimit: row.rpdLimit, tpmLimit: row.tpmLimit ?? null, tpdLimit: row.tpdLimit ?? null } as const;
        const usage = await inspect.call(deps.state, subject, nowMs, zonedDayBounds(nowMs, deps.quotaTimeZone));
        const counts = deps.metrics.tenantCounts(row.id);
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
            // Token quotas: reserved estimates, corrected to actual usage as it is reported (README, Exact TPM).
            tokens: {
              minute: { used: (row.tpmLimit ?? null) === null ? null : (usage.tokenMinute ?? 0), limit: row.tpmLimit ?? null },
              day: { used: (row.tpdLimit ?? null) === null ? null : (usage.tokenDay ?? 0), limit: row.tpdLimit ?? null },
            },
            this_replica: { admitted: counts.admitted, refused: counts.refused },
          },
        };
      },
    },
  ];
}
