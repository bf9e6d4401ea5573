// Recent request activity of this replica, for the dashboard: decisions per provider per second (allows and denials
// by code) in a fixed ring of one-second slots, and the last 429 / 401 seen per account. Everything here is bounded
// (slots, providers, outcomes per slot, accounts) because the provider name comes from the request.
import type { ObservationOutcome } from '../core/types.js';
import type { Clock } from '../ports.js';

export interface DecisionActivityOptions {
  /** Seconds of history the ring holds (the longest window `summary` can answer). Default 300. */
  readonly historySeconds?: number;
  /** Distinct provider names tracked; further names are counted under OTHER_PROVIDER. Default 64. */
  readonly maxProviders?: number;
  /** Accounts whose last 429/401 instant is remembered (oldest forgotten first). Default 10,000. */
  readonly maxAccounts?: number;
}

/** Bucket for provider names past maxProviders (a client can name any provider). */
export const OTHER_PROVIDER = '(other)';
/** Longer names are counted under OTHER_PROVIDER (no provider slug comes close). */
const MAX_PROVIDER_CHARS = 64;

export interface ProviderActivity {
  readonly windowSeconds: number;
  readonly decisions: number;
  readonly allows: number;
  /** Deny code -> count over the window. */
  readonly denials: Readonly<Record<string, number>>;
  readonly decisionsPerSecond: number;
  /** Decisions per second, oldest first, one entry per second of the window. */
  readonly perSecond: readonly number[];
}

export interface AccountSignals {
  readonly last429AtMs: number | null;
  readonly last401AtMs: number | null;
}

interface Slot {
  second: number;
  /** provider -> outcome (`allow` or deny code) -> count */
  readonly counts: Map<string, Map<string, number>>;
}

export class DecisionActivity {
  private readonly slots: Slot[];
  private readonly providers = new Set<string>();
  private readonly maxProviders: number;
  private readonly maxAccounts: number;
  private readonly signals = new Map<string, { last429AtMs: number | null; last401AtMs: number | null }>();

  constructor(
    private readonly clock: Clock,
    options: DecisionActivityOptions = {},
  ) {
    const historySeconds = options.historySeconds ?? 300;
    this.slots = Array.from({ length: historySeconds }, () => ({ second: -1, counts: new Map() }));
    this.maxProviders = options.maxProviders ?? 64;
    this.maxAccounts = options.maxAccounts ?? 10_000;
  }

  get historySeconds(): number {
    return this.slots.length;
  }

  /** Engine hook: one decision. Never throws. */
  readonly onDecision = (outcome: string, provider: string): void => {
    const second = Math.floor(this.clock.nowMs() / 1000);
    const slot = this.slots[second % this.slots.length]!;
    if (slot.second !== second) {
      slot.second = second;
      slot.counts.clear();
    }
    const name = this.providerName(provider);
    let outcomes = slot.counts.get(name);
    if (outcomes === undefined) {
      outcomes = new Map();
      slot.counts.set(name, outcomes);
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  };

  /** Engine hook: what an upstream response said about an account. Never throws. */
  readonly onObservation = (accountId: string, outcome: ObservationOutcome): void => {
    if (outcome !== 'rate_limited' && outcome !== 'invalid_credential') return;
    const nowMs = this.clock.nowMs();
    const current = this.signals.get(accountId) ?? { last429AtMs: null, last401AtMs: null };
    this.signals.delete(accountId); // re-inserted last: the map's order is least recently signalled first
    if (outcome === 'rate_limited') current.last429AtMs = nowMs;
    else current.last401AtMs = nowMs;
    this.signals.set(accountId, current);
    if (this.signals.size > this.maxAccounts) this.signals.delete(this.signals.keys().next().value!);
  };

  accountSignals(accountId: string): AccountSignals {
    return this.signals.get(accountId) ?? { last429AtMs: null, last401AtMs: null };
  }

  /** The last `windowSeconds` complete and current seconds for one provider (clamped to the history held). */
  summary(provider: string, windowSeconds: number): ProviderActivity {
    const window = Math.max(1, Math.min(windowSeconds, this.slots.length));
    const nowSecond = Math.floor(this.clock.nowMs() / 1000);
    const denials: Record<string, number> = {};
    const perSecond: number[] = [];
    let allows = 0;
    let decisions = 0;
    for (let second = nowSecond - window + 1; second <= nowSecond; second++) {
      const slot = this.slots[second % this.slots.length]!;
      const outcomes = slot.second === second ? slot.counts.get(provider) : undefined;
      let inSecond = 0;
      for (const [outcome, count] of outcomes ?? []) {
        inSecond += count;
        if (outcome === 'allow') allows += count;
        else denials[outcome] = (denials[outcome] ?? 0) + count;
      }
      perSecond.push(inSecond);
      decisions += inSecond;
    }
    return { windowSeconds: window, decisions, allows, denials, decisionsPerSecond: decisions / window, perSecond };
  }

  /** Provider names seen (within the bound), for denials on names that have no pool. */
  seenProviders(): string[] {
    return [...this.providers];
  }

  private providerName(provider: string): string {
    if (this.providers.has(provider)) return provider;
    if (this.providers.size >= this.maxProviders || provider.length > MAX_PROVIDER_CHARS) return OTHER_PROVIDER;
    this.providers.add(provider);
    return provider;
  }
}
