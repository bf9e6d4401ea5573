// Hands an allowed request's ticket from keypool's deciding ext_proc stream to the usage observer's stream of the same
// request (usage-observer.ts). They are two gRPC streams from two filters; what they share is the request's
// x-request-id, which Envoy sets before any filter runs (generated, or for trusted internal clients kept as sent).
//
// Bounded in entries and age: a ticket nobody takes (the route has no observer filter, a response without a body) is
// dropped after ttlMs or when newer ones need its room, oldest first. A later registration under the same id
// replaces the earlier one: with per-attempt ext_proc (envoy-failover.yaml) the last attempt is the one whose body the
// client, and so the observer, receives. Two concurrent requests with one client-chosen x-request-id (possible only for
// clients Envoy trusts with their own id) may swap attributions; Envoy regenerates the id for edge clients.
import type { Ticket } from '../../ports.js';

export interface UsageTicketsOptions {
  readonly maxEntries: number;
  /** Longest a ticket waits for its observer: the longest response (route timeout) plus a margin. */
  readonly ttlMs: number;
}

/** The shipped routes allow 600 s per response; a quarter hour covers it with room for a slow body. */
export const DEFAULT_USAGE_TICKETS: UsageTicketsOptions = { maxEntries: 10_000, ttlMs: 15 * 60_000 };

/**
 * Entries kept until the first observer stream connects. A gateway without the observer filter (envoy/envoy.yaml)
 * never takes a ticket: holding 10,000 of them for minutes promoted each to V8's old generation and cost ~10 us of CPU
 * per request behind Envoy (bench:envoy, run with and without the hand-over). A few dozen, overwritten within
 * milliseconds, die young; they cover the requests decided before the first observer stream arrived (its filter runs
 * after the deciding one, so the very first request's ticket is registered before any observer stream exists).
 */
export const ENTRIES_BEFORE_FIRST_OBSERVER = 64;

export class UsageTickets {
  private readonly entries = new Map<string, { readonly ticket: Ticket; readonly atMs: number }>();
  private observerSeen = false;

  constructor(private readonly options: UsageTicketsOptions = DEFAULT_USAGE_TICKETS) {}

  /** An observer stream connected: from now on tickets are kept up to the full bound. */
  observerConnected(): void {
    this.observerSeen = true;
  }

  get size(): number {
    return this.entries.size;
  }

  register(requestId: string | null, ticket: Ticket, nowMs: number): void {
    if (requestId === null || requestId === '') return;
    // Re-inserting moves the id to the newest end, so eviction stays oldest-first.
    this.entries.delete(requestId);
    this.entries.set(requestId, { ticket, atMs: nowMs });
    this.evict(nowMs);
  }

  /** The ticket registered under requestId (once: it is removed), or null when unknown or expired. */
  take(requestId: string | null, nowMs: number): Ticket | null {
    if (requestId === null) return null;
    const entry = this.entries.get(requestId);
    if (entry === undefined) return null;
    this.entries.delete(requestId);
    return nowMs - entry.atMs > this.options.ttlMs ? null : entry.ticket;
  }

  private evict(nowMs: number): void {
    const maxEntries = this.observerSeen ? this.options.maxEntries : Math.min(this.options.maxEntries, ENTRIES_BEFORE_FIRST_OBSERVER);
    for (const [id, entry] of this.entries) {
      if (this.entries.size <= maxEntries && nowMs - entry.atMs <= this.options.ttlMs) return;
      this.entries.delete(id);
    }
  }
}
