// Token sliding windows: reserve-and-reconcile for an account's tpm_limit and a key's/tenant's token quotas.
// Pure: no I/O, no clock (time comes in as nowMs). capacity.ts and quota.ts decide with a TokenLog; the Redis scripts
// (src/stores/redis-token-scripts.ts) mirror it with a ZSET of admission instants and a HASH of token counts.
//
// Model: an admission that counts tokens reserves its estimate (input estimate + max output) as one entry of the
// window, at the admission instant, under its lease id. When the provider's usage arrives, reconcile moves that
// entry's count to the actual figure (release or add the difference) without moving the entry: the window reflects
// actual usage at the instant the request was admitted. An entry whose usage never arrives keeps its estimate. Entries
// leave the window WINDOW_MS after their admission, like the requests of the rpm window.
import { WINDOW_MS } from './request-log.js';

/**
 * Entries one window holds at most (the bound on memory when reconciled figures are tiny). A full log refuses until
 * its oldest entry leaves (conservative: never admits past a limit to make room).
 */
export const TOKEN_LOG_CAP = 10_000;

interface TokenEntry {
  readonly id: string;
  readonly atMs: number;
  tokens: number;
}

/**
 * Reserved/reconciled token counts of recent admissions, oldest first, with their running sum. Kept monotonic like
 * RequestLog: an instant earlier than the newest one (clock stepped back) is recorded as the newest one.
 */
export class TokenLog {
  private entries: TokenEntry[] = [];
  private head = 0;
  private readonly byId = new Map<string, TokenEntry>();
  private total = 0;

  /** Tokens in the window (after the last prune). */
  get sum(): number {
    return this.total;
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  /** Drops every entry admitted at or before cutoffMs. */
  prune(cutoffMs: number): void {
    const entries = this.entries;
    while (this.head < entries.length && entries[this.head]!.atMs <= cutoffMs) {
      const entry = entries[this.head++]!;
      this.total -= entry.tokens;
      this.byId.delete(entry.id);
    }
    // Compact once the dropped prefix dominates (amortised O(1) per entry).
    if (this.head > 64 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head);
      this.head = 0;
    }
  }

  /** Records `tokens` reserved by admission `id` at atMs. */
  add(id: string, atMs: number, tokens: number): void {
    const newest = this.entries.length > this.head ? this.entries[this.entries.length - 1]!.atMs : atMs;
    const entry: TokenEntry = { id, atMs: Math.max(atMs, newest), tokens };
    this.entries.push(entry);
    this.byId.set(id, entry);
    this.total += tokens;
  }

  /**
   * Moves admission `id`'s count by deltaTokens (never below 0), where it stands in the window. An entry that already
   * left the window (or was never recorded) is not brought back: false.
   */
  adjust(id: string, deltaTokens: number): boolean {
    const entry = this.byId.get(id);
    if (entry === undefined) return false;
    const next = Math.max(0, entry.tokens + deltaTokens);
    this.total += next - entry.tokens;
    entry.tokens = next;
    return true;
  }

  /** Tokens recorded for admission `id` (undefined when not in the window). For tests and inspection. */
  tokensOf(id: string): number | undefined {
    return this.byId.get(id)?.tokens;
  }

  /**
   * The instant enough entries will have left for `tokens` more to fit under `limit`: the oldest entries leave first,
   * each WINDOW_MS after its admission. null when `tokens` alone exceeds the limit (it never fits by itself).
   */
  freeAtMs(tokens: number, limit: number): number | null {
    if (tokens > limit) return null;
    let over = this.total + tokens - limit;
    const entries = this.entries;
    for (let i = this.head; i < entries.length; i++) {
      const entry = entries[i]!;
      over -= entry.tokens;
      if (over <= 0) return entry.atMs + WINDOW_MS;
    }
    return null;
  }

  /** Admission instant of the oldest entry, or NaN when empty. */
  oldestMs(): number {
    return this.head < this.entries.length ? this.entries[this.head]!.atMs : Number.NaN;
  }
}

/**
 * Is there room for `tokens` more under `limit` in `log` at nowMs (pruned here)? undefined = yes; otherwise the
 * instant it frees (null = never by itself: the request alone is larger than the limit). A full log (TOKEN_LOG_CAP
 * entries) frees when its oldest entry leaves.
 */
export function tokenBlock(log: TokenLog, limit: number, tokens: number, nowMs: number): number | null | undefined {
  log.prune(nowMs - WINDOW_MS);
  if (log.size >= TOKEN_LOG_CAP) return log.oldestMs() + WINDOW_MS;
  if (log.sum + tokens <= limit) return undefined;
  return log.freeAtMs(tokens, limit);
}

/** The tokens a request reserves: a positive whole number, or 0 (no token accounting) for anything else. */
export function reservedTokens(tokens: number | undefined): number {
  return tokens !== undefined && Number.isFinite(tokens) && tokens > 0 ? Math.ceil(tokens) : 0;
}
