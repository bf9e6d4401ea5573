// Durable writes produced on the request path (audit rows, account invalidations, key touches, usage stats),
// queued in memory with a hard bound and flushed in the background with retry, so a slow or absent database
// never adds latency to a request and a short outage loses nothing.
import type { ObservationOutcome } from '../core/types.js';
import type { DurableWrites } from '../ports.js';
import { addUsageCounts, type MutableUsageCounts } from './usage-counts.js';
import type { AuditEntry } from '../catalog/audit/rows.js';
import type { UsageBucket } from '../catalog/usage/rows.js';

const MINUTE_MS = 60_000;

export interface WriteBufferOptions {
  readonly target: DurableWrites;
  /** Most pending items (audit rows + invalidations + touched keys + usage buckets) held while the database is away. */
  readonly maxPending: number;
  readonly flushIntervalMs: number;
  /** Called once per failed flush (the caller logs; the buffer keeps the items and retries next interval). */
  readonly onFlushError?: (error: unknown) => void;
  /** Called when items had to be dropped because the bound was reached. */
  readonly onDrop?: (droppedNow: number, droppedTotal: number) => void;
}

interface Invalidation {
  readonly reason: string;
  readonly actor: string;
}

interface UsageCounters extends MutableUsageCounts {
  readonly accountId: string;
  readonly bucketStartMs: number;
}

export class WriteBuffer {
  private auditQueue: AuditEntry[] = [];
  private invalidations = new Map<string, Invalidation>();
  private touchedKeys = new Map<string, number>();
  private usageBuckets = new Map<string, UsageCounters>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private dropped = 0;
  private lastFlushFailed = false;

  constructor(private readonly options: WriteBufferOptions) {}

  get droppedTotal(): number {
    return this.dropped;
  }

  /** False while the last flush failed (the database is unreachable or refusing writes); true again after one succeeds. */
  get databaseReachable(): boolean {
    return !this.lastFlushFailed;
  }

  get pending(): number {
    return this.auditQueue.length + this.invalidations.size + this.touchedKeys.size + this.usageBuckets.size;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.options.flushIntervalMs);
    this.timer.unref();
  }

  audit(entry: AuditEntry): void {
    if (this.admitOne()) this.auditQueue.push(entry);
  }

  invalidateAccount(accountId: string, reason: string, actor: string): void {
    if (this.invalidations.has(accountId) || this.admitOne()) this.invalidations.set(accountId, { reason, actor });
  }

  touchKey(keyId: string, atMs: number): void {
    const previous = this.touchedKeys.get(keyId);
    if (previous !== undefined) {
      if (atMs > previous) this.touchedKeys.set(keyId, atMs);
    } else if (this.admitOne()) {
      this.touchedKeys.set(keyId, atMs);
    }
  }

  /** Count one finished upstream request into its account's minute bucket. */
  recordUsage(accountId: string, atMs: number, outcome: ObservationOutcome, latencyMs: number): void {
    const bucketStartMs = atMs - (atMs % MINUTE_MS);
    const id = `${accountId}|${bucketStartMs}`;
    let counters = this.usageBuckets.get(id);
    if (!counters) {
      if (!this.admitOne()) return;
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

  private admitOne(): boolean {
    if (this.pending < this.options.maxPending) return true;
    this.dropped += 1;
    this.options.onDrop?.(1, this.dropped);
    return false;
  }

  private async flushOnce(): Promise<void> {
    // Each kind is taken out before its write and put back only if that write failed, so a retry never repeats
    // a write that succeeded.
    try {
      await this.flushInvalidations();
      await this.flushAudit();
      await this.flushTouches();
      await this.flushUsage();
      this.lastFlushFailed = false;
    } catch (error) {
      this.lastFlushFailed = true;
      this.options.onFlushError?.(error);
    }
  }

  private async flushInvalidations(): Promise<void> {
    for (const [accountId, invalidation] of [...this.invalidations]) {
      await this.options.target.markAccountInvalid(accountId, invalidation.reason, invalidation.actor);
      this.invalidations.delete(accountId);
    }
  }

  private async flushAudit(): Promise<void> {
    if (this.auditQueue.length === 0) return;
    const batch = this.auditQueue;
    this.auditQueue = [];
    try {
      await this.options.target.appendAudit(batch);
    } catch (error) {
      this.auditQueue = batch.concat(this.auditQueue);
      throw error;
    }
  }

  private async flushTouches(): Promise<void> {
    if (this.touchedKeys.size === 0) return;
    const batch = this.touchedKeys;
    this.touchedKeys = new Map();
    const latestMs = Math.max(...batch.values());
    try {
      await this.options.target.touchKeys([...batch.keys()], new Date(latestMs));
    } catch (error) {
      for (const [keyId, atMs] of batch) this.touchKey(keyId, atMs);
      throw error;
    }
  }

  private async flushUsage(): Promise<void> {
    if (this.usageBuckets.size === 0) return;
    const batch = this.usageBuckets;
    this.usageBuckets = new Map();
    try {
      await this.options.target.addUsage([...batch.values()].map(toUsageBucket));
    } catch (error) {
      for (const [id, counters] of batch) mergeCounters(this.usageBuckets, id, counters);
      throw error;
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
