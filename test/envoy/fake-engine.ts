// A DecisionEngine that implements the port in memory (no library mocks): round-robin over a small
// pool per provider, a cooldown after a 429, scripted denials by client key, and a record of every
// call so tests can assert what keypool saw and released.
import type { DecisionEngine, ObserveOptions, RequestOutcome, Ticket } from '../../src/ports.js';
import type { Allow, Deny, HeaderBag, RequestView } from '../../src/core/types.js';

export interface Observed {
  readonly ticket: Ticket;
  readonly status: number;
  readonly headers: HeaderBag;
  readonly options: ObserveOptions;
}

/** Client keys with a scripted outcome. */
export const CLIENT_KEY = 'kp_live_client';
export const CLIENT_KEY_DENY_429 = 'kp_deny_429';
export const CLIENT_KEY_THROW = 'kp_throw';
export const CLIENT_KEY_UNSAFE = 'kp_unsafe';

const POOLS: Record<string, { header: string; prefix: string; accounts: string[] }> = {
  openai: { header: 'authorization', prefix: 'Bearer ', accounts: ['sk-openai-a', 'sk-openai-b'] },
  anthropic: { header: 'x-api-key', prefix: '', accounts: ['sk-ant-a', 'sk-ant-b'] },
};

function deny(status: number, code: Deny['code'], message: string, headers: Deny['headers'] = []): Deny {
  return {
    kind: 'deny',
    status,
    code,
    message,
    headers,
    body: JSON.stringify({ error: { type: status === 429 ? 'rate_limit_error' : 'invalid_request_error', code, message } }),
  };
}

function clientKey(headers: HeaderBag): string | null {
  const first = (v: string | readonly string[] | undefined) => (typeof v === 'string' ? v : v?.[0]);
  const auth = first(headers['authorization']);
  if (auth?.startsWith('Bearer ')) return auth.slice(7);
  return first(headers['x-api-key']) ?? null;
}

export class FakeEngine implements DecisionEngine {
  ready = true;
  /** What issued tickets say: the account has a max_concurrency, so its slot is held until the response ends. */
  holdsConcurrencySlot = false;
  /** Delay before decide() settles, to exercise cancel-while-deciding. */
  decideDelayMs = 0;
  readonly views: RequestView[] = [];
  readonly observed: Observed[] = [];
  readonly released: Ticket[] = [];
  readonly issued: Ticket[] = [];
  readonly renewed: Ticket[] = [];
  renewIntervalMs = 10_000;
  /**
   * A 429's commit to the (imaginary) shared state settles when the test calls the resolver pushed here; until then
   * the stream must not answer. Null: commits settle at once.
   */
  pendingCommits: Array<() => void> | null = null;
  private next = 0;
  private readonly cooldownUntil = new Map<string, number>();

  isReady(): boolean {
    return this.ready;
  }

  async decide(view: RequestView): Promise<RequestOutcome> {
    this.views.push(view);
    if (this.decideDelayMs > 0) await new Promise((r) => setTimeout(r, this.decideDelayMs));
    const key = clientKey(view.headers);
    if (key === CLIENT_KEY_THROW) throw new Error('state store unreachable');
    if (key === null) return { decision: deny(401, 'missing_api_key', 'no API key'), ticket: null };
    if (key === CLIENT_KEY_DENY_429) {
      return { decision: deny(429, 'pool_exhausted', 'all accounts cooling down', [['retry-after', '7']]), ticket: null };
    }
    if (key !== CLIENT_KEY && key !== CLIENT_KEY_UNSAFE) {
      return { decision: deny(401, 'invalid_api_key', 'unknown API key'), ticket: null };
    }
    const pool = POOLS[view.provider];
    if (!pool) return { decision: deny(404, 'unknown_provider', `unknown provider ${view.provider}`), ticket: null };
    const now = Date.now();
    const candidates = pool.accounts.map((_, i) => pool.accounts[(this.next + i) % pool.accounts.length] as string);
    const account = candidates.find((a) => (this.cooldownUntil.get(a) ?? 0) <= now);
    if (!account) return { decision: deny(429, 'pool_exhausted', 'cooling down', [['retry-after', '1']]), ticket: null };
    this.next = (pool.accounts.indexOf(account) + 1) % pool.accounts.length;
    const ticket: Ticket = {
      pool: view.provider,
      accountId: account,
      accountName: account,
      leaseId: `lease-${this.issued.length + 1}`,
      keyId: 'key-1',
      startedAtMs: now,
      holdsConcurrencySlot: this.holdsConcurrencySlot,
    };
    this.issued.push(ticket);
    const secret = key === CLIENT_KEY_UNSAFE ? `${account}\r\nx-evil: 1` : account;
    const decision: Allow = {
      kind: 'allow',
      keyId: 'key-1',
      accountId: account,
      accountName: account,
      priority: 1,
      tenant: 'acme',
      removeHeaders: ['authorization', 'x-api-key'],
      setHeaders: [
        [pool.header, pool.prefix + secret],
        ['x-keypool-priority', '1'],
        ['x-keypool-tenant', 'acme'],
      ],
    };
    return { decision, ticket };
  }

  observe(ticket: Ticket, status: number, headers: HeaderBag, options: ObserveOptions = {}): Promise<void> | null {
    this.observed.push({ ticket, status, headers, options });
    if (options.release) this.released.push(ticket);
    if (status !== 429 || options.origin === 'gateway') return null;
    this.cooldownUntil.set(ticket.accountId, Date.now() + 60_000);
    const pending = this.pendingCommits;
    return pending === null ? Promise.resolve() : new Promise<void>((resolve) => pending.push(resolve));
  }

  renew(ticket: Ticket): void {
    this.renewed.push(ticket);
  }

  release(ticket: Ticket): void {
    this.released.push(ticket);
  }

  /** How many times each issued lease was released. */
  releaseCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const t of this.issued) counts[t.leaseId] = 0;
    for (const t of this.released) counts[t.leaseId] = (counts[t.leaseId] ?? 0) + 1;
    return counts;
  }
}
