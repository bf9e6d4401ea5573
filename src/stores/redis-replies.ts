// The rate-state scripts' replies (./redis-scripts.ts) read back into the port's types, and into the caller's clock:
// the scripts answer in the Redis server's time, the caller asked in its own.
import type { AccountStateView, AdmitResult, HealthState, QuotaSubject } from '../ports.js';
import { quotaWindowOf } from './redis-keys.js';

/** A number a script returned, or null for nil / '' / false / anything not finite. */
export function numOrNull(v: unknown): number | null {
  if (v === null || v === undefined || v === '' || v === false) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/** ADMIT_LUA's reply: {1, accountId} or {0, reason, retryAtMs, redisNowMs[, quota index, window]}. */
export function admitResultOf(reply: unknown[], leaseId: string, nowMs: number, quotas: readonly QuotaSubject[]): AdmitResult {
  if (reply[0] === 1) return { ok: true, accountId: String(reply[1]), leaseId };
  const redisNowMs = Number(reply[3]);
  const retry = Number(reply[2]);
  // Back into the caller's clock.
  const retryAtMs = retry < 0 ? null : retry - redisNowMs + nowMs;
  const reason = reply[1];
  if (reason === 'quota') {
    const subject = quotas[Number(reply[4]) - 1]!;
    return { ok: false, reason: 'quota', retryAtMs, limit: { scope: subject.scope, window: quotaWindowOf(reply[5]) } };
  }
  return { ok: false, reason: reason === 'unhealthy' ? 'unhealthy' : reason === 'shed' ? 'shed' : 'exhausted', retryAtMs };
}

/** INSPECT_LUA's reply: {redisNowMs, then 12 fields per account} as views, instants in the caller's clock. */
export function accountViewsOf(reply: unknown[], accountIds: readonly string[], nowMs: number): AccountStateView[] {
  const shift = nowMs - Number(reply[0]);
  const at = (v: unknown): number | null => {
    const n = numOrNull(v);
    return n === null ? null : n + shift;
  };
  const future = (v: unknown): number | null => {
    const n = at(v);
    return n !== null && n > nowMs ? n : null;
  };
  return accountIds.map((accountId, i) => {
    const f = (j: number): unknown => reply[1 + i * 12 + j];
    const health = f(0);
    return {
      accountId,
      health: health === 'degraded' || health === 'unhealthy' ? (health as HealthState) : 'healthy',
      inFlight: Number(f(1)),
      cooldownUntilMs: future(f(2)),
      circuitOpenUntilMs: future(f(3)),
      requestsInWindow: Number(f(4)),
      invalid: future(f(5)) !== null,
      learned: {
        requestsLimit: numOrNull(f(6)),
        requestsRemaining: numOrNull(f(7)),
        requestsResetAtMs: at(f(8)),
        tokensLimit: numOrNull(f(9)),
        tokensRemaining: numOrNull(f(10)),
        tokensResetAtMs: at(f(11)),
      },
    };
  });
}
