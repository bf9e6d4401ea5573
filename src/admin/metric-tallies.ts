// Per-request counters kept as plain numbers and rendered in prom-client's format at scrape time (see DecisionTally):
// decisions by outcome and latency, admissions per tenant and priority sheds. Used by src/admin/metrics.ts.
import type { Metric } from 'prom-client';

const DECISION_BUCKETS_SECONDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/**
 * keypool_decisions_total (by outcome and deny code) and keypool_decision_duration_seconds (by outcome), counted on
 * every request with plain number increments and rendered in prom-client's format at scrape time. prom-client's own
 * labelled counters and histograms hash and validate their labels on every call: ~4% of keypool's CPU behind Envoy
 * (bench:envoy's profile). Bounded: one entry per outcome (`allow` plus the deny codes).
 */
export class DecisionTally {
  private readonly byOutcome = new Map<string, { readonly kind: 'allow' | 'deny'; count: number; sumSeconds: number; readonly buckets: Float64Array }>();

  record(outcome: string, elapsedMs: number): void {
    let entry = this.byOutcome.get(outcome);
    if (entry === undefined) {
      entry = { kind: outcome === 'allow' ? 'allow' : 'deny', count: 0, sumSeconds: 0, buckets: new Float64Array(DECISION_BUCKETS_SECONDS.length) };
      this.byOutcome.set(outcome, entry);
    }
    const seconds = Math.max(0, elapsedMs) / 1000;
    entry.count += 1;
    entry.sumSeconds += seconds;
    for (let i = 0; i < DECISION_BUCKETS_SECONDS.length; i++) {
      if (seconds <= DECISION_BUCKETS_SECONDS[i]!) {
        entry.buckets[i]! += 1;
        break;
      }
    }
  }

  /** The two metrics, as objects the registry renders like prom-client's own (get() in prom-client's shape). */
  metrics(): Metric[] {
    const counter = {
      name: 'keypool_decisions_total',
      help: 'Request decisions by outcome (allow or deny) and deny code (none for allows).',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        name: counter.name,
        help: counter.help,
        type: counter.type,
        aggregator: counter.aggregator,
        values: [...this.byOutcome].map(([outcome, e]) => ({ labels: { outcome: e.kind, code: outcome === 'allow' ? 'none' : outcome }, value: e.count })),
      }),
    };
    const histogram = {
      name: 'keypool_decision_duration_seconds',
      help: 'Time to decide one request (snapshot lookup, core rules and rate-state admission).',
      type: 'histogram',
      aggregator: 'sum',
      get: async () => ({ name: histogram.name, help: histogram.help, type: histogram.type, aggregator: histogram.aggregator, values: this.histogramValues(histogram.name) }),
    };
    return [counter, histogram] as unknown as Metric[];
  }

  /** Cumulative buckets, sum and count per outcome kind (allow / deny), as Prometheus histograms are exposed. */
  private histogramValues(name: string): Array<{ labels: Record<string, string | number>; value: number; metricName: string }> {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const kind of ['allow', 'deny'] as const) {
      const entries = [...this.byOutcome.values()].filter((e) => e.kind === kind);
      if (entries.length === 0) continue;
      let cumulative = 0;
      DECISION_BUCKETS_SECONDS.forEach((le, i) => {
        cumulative += entries.reduce((n, e) => n + e.buckets[i]!, 0);
        values.push({ labels: { le, outcome: kind }, value: cumulative, metricName: `${name}_bucket` });
      });
      const count = entries.reduce((n, e) => n + e.count, 0);
      values.push({ labels: { le: '+Inf', outcome: kind }, value: count, metricName: `${name}_bucket` });
      values.push({ labels: { outcome: kind }, value: entries.reduce((n, e) => n + e.sumSeconds, 0), metricName: `${name}_sum` });
      values.push({ labels: { outcome: kind }, value: count, metricName: `${name}_count` });
    }
    return values;
  }
}

/** Tenant label of requests whose tenant is not a tenant row (or that have none): keeps the label set operator-bounded. */
const OTHER_TENANT = 'other';

/**
 * keypool_tenant_requests_total{tenant, outcome, code} and keypool_priority_shed_total{priority}: plain number
 * increments per request, rendered at scrape time (like DecisionTally). Bounded: tenants are operator-defined rows,
 * codes are the admission outcomes, priorities 0-9.
 */
export class TenantTally {
  private readonly byTenant = new Map<string, Map<string, number>>();
  private readonly shedByPriority = new Map<number, number>();

  record(tenant: string | null, priority: number, outcome: string): void {
    const label = tenant ?? OTHER_TENANT;
    let codes = this.byTenant.get(label);
    if (codes === undefined) {
      codes = new Map();
      this.byTenant.set(label, codes);
    }
    codes.set(outcome, (codes.get(outcome) ?? 0) + 1);
    if (outcome === 'priority_shed') this.shedByPriority.set(priority, (this.shedByPriority.get(priority) ?? 0) + 1);
  }

  /** This replica's counts of one tenant since start: admitted and refused by deny code. */
  countsOf(tenant: string): { readonly admitted: number; readonly refused: Readonly<Record<string, number>> } {
    const codes = this.byTenant.get(tenant);
    const refused: Record<string, number> = {};
    let admitted = 0;
    for (const [code, count] of codes ?? []) {
      if (code === 'allow') admitted = count;
      else refused[code] = count;
    }
    return { admitted, refused };
  }

  metrics(): Metric[] {
    const tenants = {
      name: 'keypool_tenant_requests_total',
      help: 'Admission outcomes per tenant row (tenant "other": no tenant row): outcome allow or deny, with the deny code.',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        ...metaOf(tenants),
        values: [...this.byTenant].flatMap(([tenant, codes]) =>
          [...codes].map(([code, value]) => ({ labels: { tenant, outcome: code === 'allow' ? 'allow' : 'deny', code: code === 'allow' ? 'none' : code }, value })),
        ),
      }),
    };
    const shed = {
      name: 'keypool_priority_shed_total',
      help: 'Requests refused with priority_shed (capacity held back for higher priorities), per request priority.',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({ ...metaOf(shed), values: [...this.shedByPriority].map(([priority, value]) => ({ labels: { priority }, value })) }),
    };
    return [tenants, shed] as unknown as Metric[];
  }
}

function metaOf(metric: { name: string; help: string; type: string; aggregator: string }): Record<string, string> {
  return { name: metric.name, help: metric.help, type: metric.type, aggregator: metric.aggregator };
}
