// The engine Kong adapter tests drive: test/helpers/test-engine.ts (the real Engine over a static snapshot and the
// memory rate state) with one upstream account per provider, whose secrets the tests look for (redaction). Compiled
// into the plugin tree for the real plugin server too (test/kong/plugin-tree.ts), where dist/src/runtime.js
// re-exports openTestRuntime as openRuntime.
import { deny } from '../../src/core/errors.js';
import type { HeaderBag, RequestView } from '../../src/core/types.js';
import type { DecideOptions, DecisionEngine, ObserveOptions, RequestOutcome, Ticket } from '../../src/ports.js';
import { createTestEngine, type TestEngine, type TestEngineOptions, type TestEngineStats } from '../helpers/test-engine.js';

/** What keypool injects upstream per provider. */
export const UPSTREAM_SECRETS = { openai: 'sk-upstream-openai', anthropic: 'sk-ant-upstream' } as const;

/**
 * A client key the plugin-server runtime answers with the engine's counters (as a keypool_unavailable message):
 * the only way a test reads them from the plugin server's process. A test probe on the DecisionEngine port; every
 * other key goes to the real engine.
 */
export const STATS_KEY = 'kp_stats';

export type KongTestStats = TestEngineStats;

/**
 * Two accounts per provider holding the same secret: the clock is frozen, so an account a test cools down with a 429
 * stays cooling; its twin keeps the pool open for the tests after it.
 */
export function createKongTestEngine(options: TestEngineOptions = {}): Promise<TestEngine> {
  const pools = {
    openai: [UPSTREAM_SECRETS.openai, UPSTREAM_SECRETS.openai],
    anthropic: [UPSTREAM_SECRETS.anthropic, UPSTREAM_SECRETS.anthropic],
  };
  return createTestEngine({ pools, defaultPriority: 5, ...options });
}

/** The real engine plus the stats probe. */
class StatsProbe implements DecisionEngine {
  constructor(private readonly engine: TestEngine) {}

  get renewIntervalMs(): number {
    return this.engine.renewIntervalMs;
  }

  isReady(): boolean {
    return this.engine.isReady();
  }

  async decide(view: RequestView, options: DecideOptions = {}): Promise<RequestOutcome> {
    const presented = [view.headers['x-api-key']].flat()[0];
    if (presented === STATS_KEY) return { decision: deny('keypool_unavailable', { message: JSON.stringify(this.engine.stats) }), ticket: null };
    return this.engine.decide(view, options);
  }

  observe(ticket: Ticket, status: number, headers: HeaderBag, options?: ObserveOptions): Promise<void> | null {
    return this.engine.observe(ticket, status, headers, options);
  }

  renew(ticket: Ticket): void {
    this.engine.renew(ticket);
  }

  release(ticket: Ticket): void {
    this.engine.release(ticket);
  }

  abandon(ticket: Ticket): void {
    this.engine.abandon(ticket);
  }
}

/** Shaped like src/runtime.ts openRuntime(): the plugin server tests serve it as dist/src/runtime.js. */
export async function openTestRuntime(): Promise<{ engine: DecisionEngine; stop(): Promise<void> }> {
  const engine = await createKongTestEngine();
  return { engine: new StatsProbe(engine), stop: async () => undefined };
}
