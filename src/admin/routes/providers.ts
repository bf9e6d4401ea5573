// Providers are seeded (sql/seed/providers.sql); an operator changes only a provider's default strategy. Each shows
// how many accounts it pools.
import type { AdminDeps } from '../deps.js';
import { bodyInput, onlyQuery, valid } from '../input.js';
import { presentProvider } from '../present.js';
import type { RouteDef } from '../router.js';
import type { AccountRow } from '../../catalog/accounts/rows.js';
import { validateProviderPatch } from '../../catalog/providers/schema.js';

export function providerRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: '/admin/providers',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const [providers, accounts] = await Promise.all([deps.repository.providers.list(), deps.repository.accounts.list()]);
        return {
          status: 200,
          body: { items: providers.map((p) => ({ ...presentProvider(p), accounts: countByStatus(accounts.filter((a) => a.providerSlug === p.slug)) })) },
        };
      },
    },
    {
      method: 'GET',
      path: '/admin/providers/:slug',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const provider = await deps.repository.providers.getBySlug(ctx.params.slug!);
        const accounts = await deps.repository.accounts.list({ providerSlug: provider.slug });
        return { status: 200, body: { provider: { ...presentProvider(provider), accounts: countByStatus(accounts) } } };
      },
    },
    {
      method: 'PATCH',
      path: '/admin/providers/:slug',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const patch = valid(validateProviderPatch(bodyInput(ctx)));
        const provider = await deps.repository.providers.update(ctx.params.slug!, patch, ctx.actor);
        const accounts = await deps.repository.accounts.list({ providerSlug: provider.slug });
        return { status: 200, body: { provider: { ...presentProvider(provider), accounts: countByStatus(accounts) } } };
      },
    },
  ];
}

function countByStatus(accounts: readonly AccountRow[]): Record<string, number> {
  const counts: Record<string, number> = { total: accounts.length, active: 0, disabled: 0, invalid: 0 };
  for (const account of accounts) counts[account.status] = (counts[account.status] ?? 0) + 1;
  return counts;
}
