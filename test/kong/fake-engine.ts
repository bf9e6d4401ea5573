// A DecisionEngine for adapter tests: the client key picks the outcome, denials are built by the real
// core (deny()), and every observe/release is counted. Compiled to JS for the real plugin server too, where
// src/runtime.js is replaced by a module re-exporting openFakeRuntime as openRuntime.
import { deny } from '../../src/core/errors.js';
import type { HeaderBag, RequestView } from '../../src/core/types.js';
import type { DecideOptions, DecisionEngine, ObserveOptions, RequestOutcome, Ticket } from '../../src/ports.js';

/** Keys with a fixed outcome. Anything else that looks like a key is unknown (invalid_api_key). */
export const FAKE_KEYS = {
  good: 'kp_good',
  revoked: 'kp_revoked',
  expired: 'kp_expired',
  /** Allowed only from 10.0.0.0/8. */
  office: 'kp_office',
  /** Its pool is at capacity: 429 with retry-after 7. */
  busy: 'kp_busy',
  /** decide() rejects: broken infrastructure. */
  broken: 'kp_broken',
  /** decide() answers an allow after 300 ms (deadline tests). */
  slow: 'kp_slow',
  /** Waits in the "admission queue": says so (onQueued, 1 s) and then takes 300 ms, or is abandoned by its signal. */
  queued: 'kp_queued',
  /** Denied with the fake's counters as the body (lets a test read them through a plugin server). */
  stats: 'kp_stats',
} as const;

/** What the fake injects upstream per provider; the secrets let tests check redaction. */
export const UPSTREAM_SECRETS = { openai: 'sk-upstream-openai', anthropic: 'sk-ant-upstream' } as const;

export interface FakeObservation {
  readonly ticket: Ticket;
  readonly status: number;
  readonly headers: HeaderBag;
}

export interface FakeStats {
  decided: number;
  allowed: number;
  /** Observations of the provider's own answers (the engine's rule: gateway replies leave account state alone). */
  observed: number;
  /** Observations of answers Kong or another plugin produced. */
  gatewayReplies: number;
  released: number;
  /** Allowed tickets not released yet. */
  inFlight: number;
}

const DEFAULT_KEY_HEADERS = ['authorization', 'x-api-key'];
const KEEP_OBSERVATIONS = 100;

export class FakeEngine implements DecisionEngine {
  readonly stats: FakeStats = { decided: 0, allowed: 0, observed: 0, gatewayReplies: 0, released: 0, inFlight: 0 };
  /** The most recent observations (bounded: soak tests run 100,000 requests). */
  readonly observations: FakeObservation[] = [];
  readonly views: RequestView[] = [];
  private readonly open = new Set<string>();
  private nextLease = 0;

  isReady(): boolean {
    return true;
  }

  async decide(view: RequestView, options: DecideOptions = {}): Promise<RequestOutcome> {
    this.stats.decided += 1;
    if (this.views.length < KEEP_OBSERVATIONS) this.views.push(view);
    const presented = presentedKey(view);
    if (presented === null) return denied('missing_api_key');
    const { key, headers } = presented;
    switch (key) {
      case FAKE_KEYS.good:
        return this.allow(view, headers);
      case FAKE_KEYS.revoked:
        return denied('key_revoked');
      case FAKE_KEYS.expired:
        return denied('key_expired');
      case FAKE_KEYS.office:
        return view.clientAddress?.startsWith('10.') ? this.allow(view, headers) : denied('ip_not_allowed');
      case FAKE_KEYS.busy:
        return { decision: deny('pool_exhausted', { retryAfterSec: 7 }), ticket: null };
      case FAKE_KEYS.broken:
        throw new Error('fake infrastructure failure');
      case FAKE_KEYS.slow:
        await new Promise((resolve) => setTimeout(resolve, 300));
        return this.allow(view, headers);
      case FAKE_KEYS.queued: {
        options.onQueued?.(1_000);
        const abandoned = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 300);
          options.signal?.addEventListener('abort', () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        return abandoned ? denied('pool_exhausted') : this.allow(view, headers);
      }
      case FAKE_KEYS.stats:
        return { decision: deny('keypool_unavailable', { message: JSON.stringify(this.stats) }), ticket: null };
      default:
        return denied('invalid_api_key');
    }
  }

  renewIntervalMs = 10_000;
  /** Lease ids renewed, in order. */
  readonly renewed: string[] = [];

  observe(ticket: Ticket, status: number, headers: HeaderBag, options: ObserveOptions = {}): Promise<void> | null {
    if (options.release) this.release(ticket);
    if (options.origin === 'gateway') {
      this.stats.gatewayReplies += 1;
      return null;
    }
    this.stats.observed += 1;
    this.observations.push({ ticket, status, headers });
    if (this.observations.length > KEEP_OBSERVATIONS) this.observations.shift();
    return null;
  }

  renew(ticket: Ticket): void {
    this.renewed.push(ticket.leaseId);
  }

  release(ticket: Ticket): void {
    if (!this.open.delete(ticket.leaseId)) return; // idempotent, as the port requires
    this.stats.released += 1;
    this.stats.inFlight = this.open.size;
  }

  private allow(view: RequestView, credentialHeaders: readonly string[]): RequestOutcome {
    this.stats.allowed += 1;
    const leaseId = `lease-${this.nextLease++}`;
    this.open.add(leaseId);
    this.stats.inFlight = this.open.size;
    const anthropic = view.provider === 'anthropic';
    const ticket: Ticket = {
      pool: view.provider,
      accountId: `${view.provider}-account-1`,
      accountName: `${view.provider} primary`,
      leaseId,
      keyId: 'key-1',
      startedAtMs: 1_700_000_000_000,
      holdsConcurrencySlot: false,
    };
    return {
      decision: {
        kind: 'allow',
        keyId: 'key-1',
        accountId: ticket.accountId,
        accountName: ticket.accountName,
        priority: 5,
        tenant: 'acme',
        removeHeaders: credentialHeaders,
        setHeaders: [
          anthropic
            ? ['x-api-key', UPSTREAM_SECRETS.anthropic]
            : ['authorization', `Bearer ${UPSTREAM_SECRETS.openai}`],
          ['x-keypool-priority', '5'],
          ['x-keypool-tenant', 'acme'],
        ],
      },
      ticket,
    };
  }
}

function denied(code: Parameters<typeof deny>[0]): RequestOutcome {
  return { decision: deny(code), ticket: null };
}

/** First key among the route's key headers, and every key header present (they are all stripped upstream). */
function presentedKey(view: RequestView): { key: string; headers: string[] } | null {
  let key: string | null = null;
  const headers: string[] = [];
  for (const name of view.keyHeaders ?? DEFAULT_KEY_HEADERS) {
    const raw = view.headers[name];
    const value = typeof raw === 'string' ? raw : raw?.[0];
    if (value === undefined) continue;
    headers.push(name);
    key ??= name === 'authorization' ? value.replace(/^Bearer\s+/i, '') : value;
  }
  return key === null ? null : { key, headers };
}

/** Shaped like src/runtime.ts openRuntime(): the plugin server test serves it as dist/src/runtime.js. */
export async function openFakeRuntime(): Promise<{ engine: FakeEngine; stop(): Promise<void> }> {
  const engine = new FakeEngine();
  return { engine, stop: async () => undefined };
}
