// keypool_tokens_total{provider,account,direction} and keypool_tenant_tokens_total{tenant,direction}: plain number
// additions per response, rendered in prom-client's format at scrape time (like DecisionTally in metric-tallies.ts).
// Bounded: accounts and tenants are operator-defined rows (a request without a tenant row counts as tenant "other"),
// directions are the four below.
import type { Metric } from 'prom-client';
import type { TokenUsage } from '../core/usage.js';

/** input counts every prompt token; cached_input and cache_creation are the parts of it read from / written to the cache. */
export const TOKEN_DIRECTIONS = ['input', 'output', 'cached_input', 'cache_creation'] as const;
type Direction = (typeof TOKEN_DIRECTIONS)[number];

const OTHER_TENANT = 'other';

type Totals = Record<Direction, number>;

function zero(): Totals {
  return { input: 0, output: 0, cached_input: 0, cache_creation: 0 };
}

function add(into: Totals, usage: TokenUsage): void {
  into.input += usage.inputTokens;
  into.output += usage.outputTokens;
  into.cached_input += usage.cachedInputTokens;
  into.cache_creation += usage.cacheCreationInputTokens;
}

export class TokenTally {
  /** By `provider\u0000account` (NUL: in neither a slug nor an account name). */
  private readonly byAccount = new Map<string, { readonly provider: string; readonly account: string; readonly totals: Totals }>();
  private readonly byTenant = new Map<string, Totals>();

  record(provider: string, account: string, tenantRow: string | null, usage: TokenUsage): void {
    const id = `${provider}\u0000${account}`;
    let entry = this.byAccount.get(id);
    if (entry === undefined) {
      entry = { provider, account, totals: zero() };
      this.byAccount.set(id, entry);
    }
    add(entry.totals, usage);
    const tenant = tenantRow ?? OTHER_TENANT;
    let totals = this.byTenant.get(tenant);
    if (totals === undefined) {
      totals = zero();
      this.byTenant.set(tenant, totals);
    }
    add(totals, usage);
  }

  metrics(): Metric[] {
    const accounts = {
      name: 'keypool_tokens_total',
      help: 'Tokens providers reported (or keypool estimated from streamed text) per account, by direction: input (cached included), output, cached_input, cache_creation.',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        ...metaOf(accounts),
        values: [...this.byAccount.values()].flatMap(({ provider, account, totals }) =>
          TOKEN_DIRECTIONS.map((direction) => ({ labels: { provider, account, direction }, value: totals[direction] })),
        ),
      }),
    };
    const tenants = {
      name: 'keypool_tenant_tokens_total',
      help: 'Tokens per tenant row (tenant "other": no tenant row), by direction as keypool_tokens_total.',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        ...metaOf(tenants),
        values: [...this.byTenant].flatMap(([tenant, totals]) => TOKEN_DIRECTIONS.map((direction) => ({ labels: { tenant, direction }, value: totals[direction] }))),
      }),
    };
    return [accounts, tenants] as unknown as Metric[];
  }
}

function metaOf(metric: { name: string; help: string; type: string; aggregator: string }): Record<string, string> {
  return { name: metric.name, help: metric.help, type: metric.type, aggregator: metric.aggregator };
}
