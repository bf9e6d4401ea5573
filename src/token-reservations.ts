// Exact TPM's second half (README "Exact TPM: reserve and reconcile"): an admission reserves its token estimate in the
// same round trip as the admission (AdmissionLimits); this moves the reservation afterwards, in the windows it was
// charged to: to the usage the provider reported, or back whole when nothing will ever use it (a request never
// forwarded, a provider error answer). Fire-and-forget; never throws.
import type { AdmissionLimits } from './admission-limits.js';
import type { TokenUsage } from './core/usage.js';
import type { Logger } from './log.js';
import type { Clock, QuotaRef, RateStateStore, Ticket } from './ports.js';

export interface TokenReservationsDeps {
  readonly state: Pick<RateStateStore, 'reconcileTokens'>;
  /** The quota days around an instant (the day a reservation was charged to). */
  readonly limits: Pick<AdmissionLimits, 'dayBounds'>;
  readonly clock: Clock;
  readonly logger: Logger;
}

export class TokenReservations {
  constructor(private readonly deps: TokenReservationsDeps) {}

  /** The ticket's request used `actualTokens` (input + output): its reservation becomes that. No-op without one. */
  reconcile(ticket: Ticket, actualTokens: number): void {
    const reserved = ticket.reservedTokens ?? 0;
    if (reserved <= 0 || !Number.isFinite(actualTokens) || actualTokens < 0) return;
    const admittedAtMs = ticket.admittedAtMs ?? ticket.startedAtMs;
    this.giveBack(ticket.pool, ticket.accountId, ticket.leaseId, admittedAtMs, ticket.tokenQuotas ?? [], reserved - Math.round(actualTokens));
  }

  /** The usage a response reported. An estimated figure (a stream without its usage counts no input) only adds. */
  settle(ticket: Ticket, usage: TokenUsage): void {
    const reserved = ticket.reservedTokens ?? 0;
    if (reserved <= 0) return;
    const actual = usage.inputTokens + usage.outputTokens;
    this.reconcile(ticket, usage.estimated ? Math.max(actual, reserved) : actual);
  }

  /**
   * Takes `tokens` (negative: adds) off admission `leaseId`'s token reservation, in the windows it was charged to at
   * `admittedAtMs` (the account's, and the key's/tenant's `quotas` in the quota day holding that instant). An
   * admission that reserved nothing has no entry: the store leaves it alone.
   */
  giveBack(pool: string, accountId: string, leaseId: string, admittedAtMs: number, quotas: readonly QuotaRef[], tokens: number): void {
    if (tokens === 0 || !Number.isFinite(tokens)) return;
    try {
      const dayBounds = quotas.length > 0 ? this.deps.limits.dayBounds(admittedAtMs) : undefined;
      void this.deps.state.reconcileTokens?.(pool, accountId, leaseId, admittedAtMs, -tokens, quotas, this.deps.clock.nowMs(), dayBounds);
    } catch (error) {
      this.deps.logger.error({ err: error, pool }, 'failed to reconcile a token reservation');
    }
  }
}
