// Retention of the two tables that grow with traffic: the audit log (through keypool_prune_audit(), migration 0004,
// the one path its append-only trigger lets a DELETE through; the pruning is itself audited) and the per-minute usage
// counters (per account, and the tokens per key and tenant). One home for `keypool audit prune` and the automatic retention of `keypool serve`.
import type { ConfigRepository } from '../catalog/repository.js';

export interface PruneResult {
  /** When rows had to be older than to go. */
  readonly before: Date;
  readonly auditRows: number;
  /** Minute buckets of account_usage_stats and token_usage_stats together. */
  readonly usageBuckets: number;
}

export async function pruneOlderThan(repo: ConfigRepository, before: Date, actor: string): Promise<PruneResult> {
  const auditRows = await repo.audit.prune(before, actor);
  const usageBuckets = (await repo.usage.prune(before)) + (await repo.tokenUsage.prune(before));
  return { before, auditRows, usageBuckets };
}
