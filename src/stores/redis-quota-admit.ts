// Redis Cluster admission with quotas: a key's or tenant's quota keys hash to their own slot (`{kpq:...}`), so one
// script cannot cover them and the pool's accounts. Each quota is reserved first on its slot (QUOTA_RESERVE_LUA, under
// the admission's lease id), then the account admitted on the pool's slot; the reservations go back when a later step
// refuses (QUOTA_REFUND_LUA). A counter is never above its limit: each reservation is atomic on its slot.
import { createHash } from 'node:crypto';
import type { AdmitRequest, AdmitResult, DayBounds, QuotaSubject } from '../ports.js';
import { reservedTokens } from '../core/token-window.js';
import { QUOTA_REFUND_LUA, QUOTA_RESERVE_LUA } from './redis-quota-scripts.js';
import { QUOTA_KEYS, quotaKeysInto, quotaWindowOf } from './redis-keys.js';

/** What the reservation needs of the store. */
export interface QuotaRunner {
  readonly keyPrefix: string;
  readonly testClock: boolean;
  /** EVALSHA (EVAL on NOSCRIPT) of one script. */
  run(lua: string, sha: string, keys: readonly string[], args: readonly string[]): Promise<unknown>;
  backgroundError(error: unknown): void;
}

const QUOTA_RESERVE_SHA = createHash('sha1').update(QUOTA_RESERVE_LUA).digest('hex');
const QUOTA_REFUND_SHA = createHash('sha1').update(QUOTA_REFUND_LUA).digest('hex');

function str(n: number | null): string {
  return n === null ? '' : String(n);
}

/**
 * Redis Cluster: each quota reserved on its own slot (QUOTA_RESERVE_LUA), then the account admitted on the pool's
 * slot (ADMIT_LUA without quotas); reservations are given back when a later step refuses. Never over a limit.
 */
export async function admitReservingQuotas(
  runner: QuotaRunner,
  request: AdmitRequest,
  quotas: readonly QuotaSubject[],
  bounds: DayBounds,
  leaseId: string,
  admitAccount: (request: AdmitRequest) => Promise<AdmitResult>,
): Promise<AdmitResult> {
  const clock = runner.testClock ? String(request.nowMs) : '';
  const tokens = String(reservedTokens(request.tokens));
  const reserved: Array<readonly [keys: string[], dayCharged: boolean, dayTokens: string]> = [];
  const refund = (): void => {
    for (const [keys, dayCharged, dayTokens] of reserved) {
      runner.run(QUOTA_REFUND_LUA, QUOTA_REFUND_SHA, keys, [leaseId, dayCharged ? '1' : '0', dayTokens]).catch((error: unknown) => runner.backgroundError(error));
    }
  };
  try {
    for (const q of quotas) {
      const keys = quotaKeysInto(runner.keyPrefix, new Array<string>(QUOTA_KEYS), 0, q, bounds);
      const limits = [str(q.rpmLimit), str(q.rpdLimit), str(q.tpmLimit ?? null), str(q.tpdLimit ?? null)];
      const reply = (await runner.run(QUOTA_RESERVE_LUA, QUOTA_RESERVE_SHA, keys, [leaseId, clock, ...bounds.map(String), ...limits, tokens])) as unknown[];
      if (reply[0] !== 1) {
        refund();
        const retry = Number(reply[2]);
        const retryAtMs = retry < 0 ? null : retry - Number(reply[3]) + request.nowMs;
        return { ok: false, reason: 'quota', retryAtMs, limit: { scope: q.scope, window: quotaWindowOf(reply[1]) } };
      }
      const day = Number(reply[1]);
      reserved.push([[keys[0]!, keys[day]!, keys[4]!, keys[5]!, keys[5 + day]!], q.rpdLimit !== null, (q.tpdLimit ?? null) !== null ? tokens : '0']);
    }
    // The same lease id as the reservations: a reconcile finds the admission in the quotas' token windows too.
    const result = await admitAccount(request);
    if (!result.ok) refund();
    return result;
  } catch (error) {
    refund();
    throw error;
  }
}
