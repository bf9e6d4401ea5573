// Token prices (USD per million tokens per provider and model pattern): what `cost_usd` in token usage is computed
// from (src/core/usage-cost.ts). Model patterns may contain `/` (OpenRouter's `openai/gpt-4o`), so they travel in the
// body or the query, never in the path.
import type { AdminDeps } from '../deps.js';
import { bodyInput, onlyQuery, queryString, valid } from '../input.js';
import { badRequest } from '../http-errors.js';
import { presentPrice } from '../present.js';
import type { RouteDef } from '../router.js';
import { checkModelPattern, validatePrice } from '../../catalog/prices/schema.js';
import { checkProviderSlug } from '../../catalog/validated.js';

const BASE = '/admin/prices';

export function priceRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: BASE,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        return { status: 200, body: { items: (await deps.repository.prices.list()).map(presentPrice) } };
      },
    },
    {
      method: 'PUT',
      path: BASE,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const price = valid(validatePrice(bodyInput(ctx)));
        return { status: 200, body: { price: presentPrice(await deps.repository.prices.set(price, ctx.actor)) } };
      },
    },
    {
      method: 'DELETE',
      path: BASE,
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['provider', 'model']);
        const provider = checkProviderSlug(queryString(ctx, 'provider'));
        if (!provider.ok) throw badRequest('invalid_parameter', `provider: ${provider.message}`, 'provider');
        const model = checkModelPattern(queryString(ctx, 'model'));
        if (!model.ok) throw badRequest('invalid_parameter', `model: ${model.message}`, 'model');
        await deps.repository.prices.delete(provider.value, model.value, ctx.actor);
        return { status: 204 };
      },
    },
  ];
}
