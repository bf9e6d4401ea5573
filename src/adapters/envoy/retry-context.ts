// Lets a retried request be decided again as the client sent it, when keypool runs as an Envoy
// UPSTREAM filter (envoy/envoy-failover.yaml).
//
// Why: upstream filters run once per attempt, but every attempt of one request shares ONE request
// header map. keypool's mutation on attempt 1 (client key removed, pooled key set) is what attempt 2
// starts from, so attempt 2 would arrive without the client's key (measured with Envoy 1.40:
// test/envoy/envoy-real.test.ts). keypool therefore remembers, per x-request-id, the client
// credential headers it removed and the headers it injected; a later stream carrying the same
// x-request-id AND exactly the injected headers (which include the pooled secret, known only to
// keypool and Envoy) is recognised as the next attempt and decided on the original headers (the
// key is re-checked in full: expiry, revocation, allowlist).
//
// Bounded: at most maxEntries (oldest evicted first); an entry lives while its attempt is in flight
// (up to attemptTtlMs) and then only retryWindowMs after a retriable outcome (429/5xx/reset).
// It works when every attempt of a request reaches the same keypool process (the shipped sidecar
// topology: one keypool endpoint per Envoy). Pure: time comes in as nowMs.
//
// Per stream and declarative: only streams whose gRPC metadata carries `x-keypool-retry-context: enabled`
// (envoy-failover.yaml sets it on each provider cluster's ext_proc grpc_service) are remembered and
// recalled. envoy.yaml runs keypool once per request, never sends it, and skips this work entirely.
import type { Allow, HeaderBag, HeaderPairs } from '../../core/types.js';

export const REQUEST_ID_HEADER = 'x-request-id';

/** gRPC metadata key (initial metadata of an ext_proc stream) that turns the retry memory on for that stream. */
export const RETRY_CONTEXT_METADATA_KEY = 'x-keypool-retry-context';
/**
 * The metadata value that turns it on (compared trimmed, case-insensitively); anything else leaves it off. Not `on`:
 * YAML 1.1 (Envoy's loader) reads an unquoted `on` as a boolean, and Envoy then rejects the bootstrap.
 */
export const RETRY_CONTEXT_ENABLED = 'enabled';

export interface RetryContextOptions {
  /** Most requests remembered at once. */
  readonly maxEntries: number;
  /** How long an attempt may stay in flight (match the route timeout). */
  readonly attemptTtlMs: number;
  /** How long after a retriable outcome the next attempt may arrive (backoff + scheduling). */
  readonly retryWindowMs: number;
}

export const DEFAULT_RETRY_CONTEXT: RetryContextOptions = {
  maxEntries: 10_000,
  attemptTtlMs: 600_000,
  retryWindowMs: 30_000,
};

interface Entry {
  /** The client's credential headers keypool removed, as the client sent them. */
  readonly restore: ReadonlyArray<readonly [string, string | readonly string[]]>;
  /** What keypool set on the last attempt; a later attempt must carry exactly these. */
  readonly injected: HeaderPairs;
  expiresAtMs: number;
}

export class RetryContexts {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly options: RetryContextOptions = DEFAULT_RETRY_CONTEXT) {}

  get size(): number {
    return this.entries.size;
  }

  /** The request id Envoy stamped on this request, if any. */
  static requestIdOf(headers: HeaderBag): string | null {
    const id = headers[REQUEST_ID_HEADER];
    return typeof id === 'string' && id.length > 0 ? id : null;
  }

  /**
   * If `headers` are a later attempt of a remembered request, the headers as the client sent them
   * (keypool's injected headers taken out, the client's credentials put back); else null.
   */
  recall(headers: HeaderBag, nowMs: number): HeaderBag | null {
    const id = RetryContexts.requestIdOf(headers);
    if (id === null) return null;
    const entry = this.entries.get(id);
    if (!entry) return null;
    if (entry.expiresAtMs <= nowMs) {
      this.entries.delete(id);
      return null;
    }
    if (!entry.injected.every(([name, value]) => headers[name] === value)) return null;
    const original: Record<string, string | readonly string[] | undefined> = Object.create(null) as Record<string, string>;
    for (const [name, value] of Object.entries(headers)) original[name] = value;
    for (const [name] of entry.injected) delete original[name];
    for (const [name, value] of entry.restore) original[name] = value;
    return original;
  }

  /** After an Allow on `clientHeaders` (the headers the decision was made on). */
  remember(clientHeaders: HeaderBag, decision: Allow, nowMs: number): void {
    const id = RetryContexts.requestIdOf(clientHeaders);
    if (id === null) return;
    const restore: Array<readonly [string, string | readonly string[]]> = [];
    for (const name of decision.removeHeaders) {
      const value = clientHeaders[name.toLowerCase()];
      if (value !== undefined) restore.push([name.toLowerCase(), value]);
    }
    const injected: HeaderPairs = decision.setHeaders.map(([name, value]) => [name.toLowerCase(), value] as const);
    this.entries.delete(id); // re-insert at the back: eviction order = least recently decided
    this.entries.set(id, { restore, injected, expiresAtMs: nowMs + this.options.attemptTtlMs });
    this.evict(nowMs);
  }

  /**
   * The attempt ended: `status` from its response headers, or null when it ended without one
   * (reset, cancel). Keep the entry briefly if Envoy may retry, else forget it.
   */
  settle(requestId: string, status: number | null, nowMs: number): void {
    const entry = this.entries.get(requestId);
    if (!entry) return;
    if (status === null || status === 429 || status >= 500) {
      entry.expiresAtMs = Math.min(entry.expiresAtMs, nowMs + this.options.retryWindowMs);
    } else {
      this.entries.delete(requestId);
    }
  }

  private evict(nowMs: number): void {
    for (const [id, entry] of this.entries) {
      if (this.entries.size <= this.options.maxEntries && entry.expiresAtMs > nowMs) break;
      this.entries.delete(id);
    }
  }
}
