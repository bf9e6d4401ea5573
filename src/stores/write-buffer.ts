// Durable writes produced on the request path (audit rows, account invalidations, key touches, usage stats),
// queued in memory with a hard bound and flushed in the background with retry, so a slow or absent database
// never adds latency to a request and a short outage loses nothing.
//
// One kind failing never starves another: the next flush starts right after the kind that failed. A batch the
// database refuses for its data (SQLSTATE class 22 data exception, 23 integrity violation: a value PostgreSQL cannot
// store, a row whose account was deleted meanwhile) is split until the offending rows are alone; those are dropped
// and reported, the rest is written. Only a failure of the database itself (connection, timeout) keeps a batch for the next flush.
// Invalidations (rare, and what every replica's next snapshot must see) are written at once, not at the next tick.
import type { ObservationOutcome } from '../core/types.js';
import type { DurableWrites } from '../ports.js';
import { sqlState } from './errors.js';
import { addUsageCounts, type MutableUsageCounts } from './usage-counts.js';
import type { AuditEntry } from '../catalog/audit/rows.js';
import { addTokenCounts, emptyTokenCounts, type MutableTokenCounts, type TokenCounts, type TokenUsageBucket, type UsageBucket } from '../catalog/usage/rows.js';

const MINUTE_MS = 60_000;
/**
 * Rows per write. The repository writes up to 1,000 rows in one statement: staying below keeps each write one
 * statement, so a refused write wrote nothing and splitting it never writes a row twice.
 */
const WRITE_BATCH_ROWS = 500;

export type WriteKind = 'audit' | 'invalidation' | 'key_touch' | 'usage' | 'tokens';
/** buffer_full: the bound was reached while the database was away; rejected: the database refused the row's data. */
export type DropReason = 'buffer_full' | 'rejected';

/** A row the database refused; never carries the row's values (they may hold client input), only where and why. */
export interface RejectedWrite {
  readonly kind: WriteKind;
  /** The SQLSTATE the database answered (e.g. 22021 invalid byte sequence, 23503 foreign key). */
  readonly sqlState: string;
  /** Rows of this kind rejected since start. */
  readonly rejectedTotal: number;
}

/** True for errors about the data of a batch (retrying it unchanged can never succeed), not about the database. */
export function isDataError(error: unknown): boolean {
  const state = sqlState(error);
  return state !== undefined && (state.startsWith('22') || state.startsWith('23'));
}

export interface WriteBufferOptions {
  readonly target: DurableWrites;
  /** Most pending items (audit rows + invalidations + touched keys + usage and token buckets) held while the database is away. */
  readonly maxPending: number;
  readonly flushIntervalMs: number;
  /** Called once per failed flush (the caller logs; the buffer keeps the items and retries next interval). */
  readonly onFlushError?: (error: unknown) => void;
  /** Called when items had to be dropped because the bound was reached. */
  readonly onDrop?: (droppedNow: number, droppedTotal: number) => void;
  /** Called once per row the database refused for its data (the row is dropped; the rest of its batch is written). */
  readonly onRejected?: (rejected: RejectedWrite) => void;
}

interface Invalidation {
  readonly reason: string;
  readonly actor: string;
  readonly as: 'invalid' | 'disabled';
}

interface UsageCounters extends MutableUsageCounts {
  readonly accountId: string;
  readonly bucketStartMs: number;
}

interface TokenCounters extends MutableTokenCounts {
  readonly keyId: string;
  readonly tenantId: string;
  readonly provider: string;
  readonly bucketStartMs: number;
}

/** One response's tokens, as the engine records them (see recordTokens). */
export interface TokenRecord {
  readonly accountId: string;
  readonly keyId: string;
  /** '' for a request without tenant. */
  readonly tenantId: string;
  readonly provider: string;
  readonly atMs: number;
  /** requests is 1, estimatedRequests 0 or 1. */
  readonly counts: TokenCounts;
}

export class WriteBuffer {
  private auditQueue: AuditEntry[] = [];
  /** Denials queued since the last flush took the audit queue, by identity (see auditDenial). */
  private pendingDenials = new Map<string, AuditEntry & { occurrences: number }>();
  private invalidations = new Map<string, Invalidation>();
  private touchedKeys = new Map<string, number>();
  private usageBuckets = new Map<string, UsageCounters>();
  private tokenBuckets = new Map<string, TokenCounters>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private dropped = 0;
  private readonly droppedBy = new Map<`${WriteKind}|${DropReason}`, number>();
  private lastFlushFailed = false;
  private invalidating: Promise<void> | undefined;

  constructor(private readonly options: WriteBufferOptions) {}

  get droppedTotal(): number {
    return this.dropped;
  }

  /** Dropped writes by kind and reason, for keypool_dropped_writes_total{kind,reason}. */
  droppedByCause(): Array<{ readonly kind: WriteKind; readonly reason: DropReason; readonly count: number }> {
    return [...this.droppedBy].map(([cause, count]) => {
      const [kind, reason] = cause.split('|') as [WriteKind, DropReason];
      return { kind, reason, count };
    });
  }

  /** False while the last flush failed (the database is unreachable or refusing writes); true again after one succeeds. */
  get databaseReachable(): boolean {
    return !this.lastFlushFailed;
  }

  get pending(): number {
    return this.auditQueue.length + this.invalidations.size + this.touchedKeys.size + this.usageBuckets.size + this.tokenBuckets.size;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.options.flushIntervalMs);
    this.timer.unref();
  }

  audit(entry: AuditEntry): void {
    if (this.admitOne('audit')) this.auditQueue.push(entry);
  }

  /**
   * A request-path denial. Identical ones (same key, action and client address) until the next flush become one row
   * whose `occurrences` counts them, so a flood of denials writes one row per flush window, not one per request.
   * The row keeps the first denial's time and metadata.
   */
  auditDenial(entry: AuditEntry): void {
    const identity = `${entry.keyId ?? ''}|${entry.action}|${entry.clientIp ?? ''}`;
    const pending = this.pendingDenials.get(identity);
    if (pending !== undefined) {
      pending.occurrences += 1;
      return;
    }
    if (!this.admitOne('audit')) return;
    const row = { ...entry, occurrences: entry.occurrences ?? 1 };
    this.pendingDenials.set(identity, row);
    this.auditQueue.push(row);
  }

  /** Queued, and written at once (not at the next tick); kept for the next flush if the database is away. */
  /** Settles once the write has been tried (failures are reported and retried by later flushes, never thrown). */
  /** `as`: the status the account gets: `invalid` (a rejected credential, the default) or `disabled` (credit used up). */
  invalidateAccount(accountId: string, reason: string, actor: string, as: 'invalid' | 'disabled' = 'invalid'): Promise<void> {
    if (this.invalidations.has(accountId) || this.admitOne('invalidation')) this.invalidations.set(accountId, { reason, actor, as });
    this.invalidating ??= this.flushInvalidations()
      .catch((error: unknown) => this.options.onFlushError?.(error))
      .finally(() => {
        this.invalidating = undefined;
      });
    return this.invalidating;
  }

  touchKey(keyId: string, atMs: number): void {
    const previous = this.touchedKeys.get(keyId);
    if (previous !== undefined) {
      if (atMs > previous) this.touchedKeys.set(keyId, atMs);
    } else if (this.admitOne('key_touch')) {
      this.touchedKeys.set(keyId, atMs);
    }
  }

  /** Count one finished upstream request into its account's minute bucket. */
  recordUsage(accountId: string, atMs: number, outcome: ObservationOutcome, latencyMs: number): void {
    const bucketStartMs = atMs - (atMs % MINUTE_MS);
    const id = `${accountId}|${bucketStartMs}`;
    let counters = this.usageBuckets.get(id);
    if (!counters) {
      if (!this.admitOne('usage')) return;
      counters = emptyCounters(accountId, bucketStartMs);
      this.usageBuckets.set(id, counters);
    }
    counters.requests += 1;
    counters.latencyMsSum += Math.max(0, Math.round(latencyMs));
    if (outcome === 'success') counters.successes += 1;
    else if (outcome === 'rate_limited') counters.rateLimited += 1;
    else if (outcome === 'server_error') counters.serverErrors += 1;
    else counters.clientErrors += 1;
  }

  /**
   * Count one response's tokens: into its account's minute bucket (account_usage_stats; the request itself was
   * counted by recordUsage when its status arrived) and into its key's and tenant's (token_usage_stats, when the
   * target can write it). Both are aggregated per minute, so the buffer grows with distinct keys, not requests.
   */
  recordTokens(record: TokenRecord): void {
    const bucketStartMs = record.atMs - (record.atMs % MINUTE_MS);
    const accountBucket = `${record.accountId}|${bucketStartMs}`;
    let counters = this.usageBuckets.get(accountBucket);
    if (!counters && this.admitOne('usage')) {
      counters = emptyCounters(record.accountId, bucketStartMs);
      this.usageBuckets.set(accountBucket, counters);
    }
    if (counters) {
      counters.inputTokens += record.counts.inputTokens;
      counters.outputTokens += record.counts.outputTokens;
      counters.cachedInputTokens += record.counts.cachedInputTokens;
      counters.cacheCreationInputTokens += record.counts.cacheCreationInputTokens;
    }
    if (this.options.target.addTokenUsage === undefined) return;
    const id = `${record.keyId}|${record.tenantId}|${record.provider}|${bucketStartMs}`;
    let tokens = this.tokenBuckets.get(id);
    if (!tokens) {
      if (!this.admitOne('tokens')) return;
      tokens = { keyId: record.keyId, tenantId: record.tenantId, provider: record.provider, bucketStartMs, ...emptyTokenCounts() };
      this.tokenBuckets.set(id, tokens);
    }
    addTokenCounts(tokens, record.counts);
  }

  /** Write everything pending; concurrent callers share one flush. Never rejects. */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /**
   * Stop the timer and make a last attempt to write what is pending. A flush already running holds only the batch it
   * took when it started, so wait for it and then flush once more (what arrived meanwhile, e.g. the last responses of
   * a drain). Gives up after timeoutMs: a partitioned database answers nothing, and a stopping process must not wait
   * for it forever. Resolves true when everything was written.
   */
  async stop(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const finished = await settlesWithin(this.flush().then(() => this.flush()), timeoutMs);
    return finished && this.pending === 0;
  }

  private admitOne(kind: WriteKind): boolean {
    if (this.pending < this.options.maxPending) return true;
    this.dropped += 1;
    this.countDrop(kind, 'buffer_full');
    this.options.onDrop?.(1, this.dropped);
    return false;
  }

  private countDrop(kind: WriteKind, reason: DropReason): number {
    const cause = `${kind}|${reason}` as const;
    const count = (this.droppedBy.get(cause) ?? 0) + 1;
    this.droppedBy.set(cause, count);
    return count;
  }

  private async flushOnce(): Promise<void> {
    // Each kind is taken out before its write and put back only if the database failed, so a retry never repeats a
    // write that succeeded. A failing kind ends this flush (the database is most likely away: the others would only
    // fail too), and the next flush starts with the kind after it, so a kind that keeps failing never starves the
    // others: they are written first on every flush.
    const kinds = this.flushOrder;
    let failure: unknown = undefined;
    for (let i = 0; i < kinds.length; i++) {
      const index = (this.firstKind + i) % kinds.length;
      try {
        await kinds[index]!();
      } catch (error) {
        failure = error;
        this.firstKind = (index + 1) % kinds.length;
        break;
      }
    }
    this.lastFlushFailed = failure !== undefined;
    if (failure !== undefined) this.options.onFlushError?.(failure);
  }

  /** The kinds in their usual order (invalidations first: what every replica's next snapshot must see). */
  private readonly flushOrder: ReadonlyArray<() => Promise<void>> = [
    () => this.invalidating ?? this.flushInvalidations(),
    () => this.flushAudit(),
    () => this.flushTouches(),
    () => this.flushUsage(),
    () => this.flushTokens(),
  ];
  /** Where the next flush starts: right after the kind that failed last. */
  private firstKind = 0;

  private async flushInvalidations(): Promise<void> {
    // Live iteration: an invalidation queued while this flush writes (a quota scope's siblings) is written by it too.
    for (const [accountId, invalidation] of this.invalidations) {
      const { error } = await this.writeIsolating('invalidation', [accountId], () =>
        this.options.target.markAccountInvalid(accountId, invalidation.reason, invalidation.actor, invalidation.as),
      );
      if (error !== undefined) throw error;
      // Unless it was invalidated again meanwhile with another reason, it is written.
      if (this.invalidations.get(accountId) === invalidation) this.invalidations.delete(accountId);
    }
  }

  private async flushAudit(): Promise<void> {
    if (this.auditQueue.length === 0) return;
    const batch = this.auditQueue;
    this.auditQueue = [];
    // Rows taken for writing are no longer counted into; the next identical denial starts a new row.
    this.pendingDenials = new Map();
    const { unwritten, error } = await this.writeIsolating('audit', batch, (rows) => this.options.target.appendAudit(rows));
    if (error !== undefined) {
      this.auditQueue = unwritten.concat(this.auditQueue);
      throw error;
    }
  }

  private async flushTouches(): Promise<void> {
    if (this.touchedKeys.size === 0) return;
    const batch = this.touchedKeys;
    this.touchedKeys = new Map();
    const at = new Date(Math.max(...batch.values()));
    const { unwritten, error } = await this.writeIsolating('key_touch', [...batch.keys()], (keyIds) => this.options.target.touchKeys(keyIds, at));
    if (error !== undefined) {
      for (const keyId of unwritten) this.touchKey(keyId, batch.get(keyId)!);
      throw error;
    }
  }

  private async flushUsage(): Promise<void> {
    if (this.usageBuckets.size === 0) return;
    const batch = this.usageBuckets;
    this.usageBuckets = new Map();
    const { unwritten, error } = await this.writeIsolating('usage', [...batch], (rows) =>
      this.options.target.addUsage(rows.map(([, counters]) => toUsageBucket(counters))),
    );
    if (error !== undefined) {
      for (const [id, counters] of unwritten) mergeCounters(this.usageBuckets, id, counters);
      throw error;
    }
  }

  private async flushTokens(): Promise<void> {
    const write = this.options.target.addTokenUsage;
    if (this.tokenBuckets.size === 0 || write === undefined) return;
    const batch = this.tokenBuckets;
    this.tokenBuckets = new Map();
    const { unwritten, error } = await this.writeIsolating('tokens', [...batch], (rows) =>
      write.call(this.options.target, rows.map(([, counters]) => toTokenBucket(counters))),
    );
    if (error !== undefined) {
      for (const [id, counters] of unwritten) {
        const existing = this.tokenBuckets.get(id);
        if (existing === undefined) this.tokenBuckets.set(id, counters);
        else addTokenCounts(existing, counters);
      }
      throw error;
    }
  }

  /**
   * Writes `rows` in slices of WRITE_BATCH_ROWS; on a data error splits a slice in halves until each refused row is
   * alone, drops those (reported through onRejected) and writes the rest. Resolves with the rows not written because
   * the database itself failed, and that error; never rejects.
   */
  private async writeIsolating<T>(
    kind: WriteKind,
    rows: readonly T[],
    write: (rows: readonly T[]) => Promise<void>,
  ): Promise<{ readonly unwritten: readonly T[]; readonly error?: unknown }> {
    for (let start = 0; start < rows.length; start += WRITE_BATCH_ROWS) {
      const slice = await this.writeSplitting(kind, rows.slice(start, start + WRITE_BATCH_ROWS), write);
      if (slice.error !== undefined) return { unwritten: [...slice.unwritten, ...rows.slice(start + WRITE_BATCH_ROWS)], error: slice.error };
    }
    return { unwritten: [] };
  }

  private async writeSplitting<T>(
    kind: WriteKind,
    rows: readonly T[],
    write: (rows: readonly T[]) => Promise<void>,
  ): Promise<{ readonly unwritten: readonly T[]; readonly error?: unknown }> {
    try {
      await write(rows);
      return { unwritten: [] };
    } catch (error) {
      if (!isDataError(error)) return { unwritten: rows, error };
      if (rows.length === 1) {
        this.dropped += 1;
        const rejectedTotal = this.countDrop(kind, 'rejected');
        this.options.onRejected?.({ kind, sqlState: sqlState(error)!, rejectedTotal });
        return { unwritten: [] };
      }
      const middle = rows.length >>> 1;
      const left = await this.writeSplitting(kind, rows.slice(0, middle), write);
      if (left.error !== undefined) return { unwritten: [...left.unwritten, ...rows.slice(middle)], error: left.error };
      return this.writeSplitting(kind, rows.slice(middle), write);
    }
  }
}

function emptyCounters(accountId: string, bucketStartMs: number): UsageCounters {
  return {
    accountId,
    bucketStartMs,
    requests: 0,
    successes: 0,
    rateLimited: 0,
    clientErrors: 0,
    serverErrors: 0,
    inputTokens: 0,
    outputTokens: 0,
    cachedInputTokens: 0,
    cacheCreationInputTokens: 0,
    latencyMsSum: 0,
  };
}

function mergeCounters(into: Map<string, UsageCounters>, id: string, counters: UsageCounters): void {
  const existing = into.get(id);
  if (!existing) {
    into.set(id, counters);
    return;
  }
  addUsageCounts(existing, counters);
}

function toTokenBucket(counters: TokenCounters): TokenUsageBucket {
  const { bucketStartMs, ...rest } = counters;
  return { ...rest, bucketStart: new Date(bucketStartMs) };
}

function toUsageBucket(counters: UsageCounters): UsageBucket {
  const { bucketStartMs, ...rest } = counters;
  return { ...rest, bucketStart: new Date(bucketStartMs) };
}

/** True when `promise` (which never rejects) settles within timeoutMs, false when the time ran out first. */
function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  if (!Number.isFinite(timeoutMs)) return promise.then(() => true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
