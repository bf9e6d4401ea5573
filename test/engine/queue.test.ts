// Waiting in priority order through the real engine (in-memory PGlite, compiled snapshot, memory rate state, and
// again over the real Redis rate state): an account with max_concurrency 1 is held; the requests that find it busy
// wait (queue.max_wait_ms) and get it in priority order as it frees up. Assertions are about order and outcomes;
// time bounds are generous lower bounds.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { createLogger } from '../../src/log.js';
import { LazyAbort } from '../../src/adapters/lazy-abort.js';
import type { Allow, Deny, RequestView } from '../../src/core/types.js';
import type { DecideOptions, RequestOutcome, Ticket } from '../../src/ports.js';

let runtime: Runtime;
let batchKey: string; // P7 (the default priority)
let productionKey: string; // P0 by mapping
let accountId: string;
const queueEvents: string[] = [];

function view(key: string): RequestView {
  return { headers: { authorization: `Bearer ${key}` }, clientAddress: '192.0.2.10:40000', provider: 'openai' };
}

function ticketOf(outcome: RequestOutcome): Ticket {
  expect(outcome.decision.kind).toBe('allow');
  return outcome.ticket!;
}

function priorityOf(outcome: RequestOutcome): string | undefined {
  return Object.fromEntries((outcome.decision as Allow).setHeaders)['x-keypool-priority'];
}

/** Starts a decision and resolves `queued` once the engine says it waits. */
function waiting(key: string, options: DecideOptions = {}): { outcome: Promise<RequestOutcome>; queued: Promise<number> } {
  let onQueued: (ms: number) => void = () => undefined;
  const queued = new Promise<number>((resolve) => (onQueued = resolve));
  return { outcome: runtime.engine.decide(view(key), { ...options, onQueued }), queued };
}

async function setQueue(maxWaitMs: number, maxLength = 1000): Promise<void> {
  await runtime.repository.settings.set('queue.max_wait_ms', maxWaitMs, 'test');
  await runtime.repository.settings.set('queue.max_length', maxLength, 'test');
  await runtime.snapshots.reload();
}

async function inFlight(): Promise<number> {
  const [state] = await runtime.state.inspect('openai', [accountId], Date.now());
  return state!.inFlight;
}

/**
 * With Redis: decide until the shared state answers (the connection opens in the background and, until then, the
 * resilient store decides on its per-replica fallback), so the tests below run on Redis; they check it stays so.
 */
async function onSharedState(): Promise<void> {
  const shared = runtime.sharedState;
  if (shared === null) return;
  for (let i = 0; i < 400; i++) {
    const fallbacksBefore = shared.fallbackCount;
    const outcome = await runtime.engine.decide(view(batchKey));
    if (outcome.ticket) runtime.engine.release(outcome.ticket);
    if (shared.mode === 'shared' && shared.breakerState === 'closed' && shared.fallbackCount === fallbacksBefore) {
      fallbacksAtStart = shared.fallbackCount;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the Redis rate state never answered');
}
let fallbacksAtStart = 0;

const STATES = {
  memory: {},
  redis: { redisUrl: 'redis://127.0.0.1:6379', redisKeyPrefix: `kpqueue:${randomBytes(5).toString('hex')}:` },
} as const;

describe.each(Object.keys(STATES) as Array<keyof typeof STATES>)('waiting for an account in priority order (%s rate state)', (stateKind) => {
  beforeAll(async () => {
    queueEvents.length = 0;
    runtime = await openRuntime({
      config: { databaseUrl: 'memory://', demoSeed: false, flushIntervalMs: 60_000, reloadIntervalMs: 600_000, ...STATES[stateKind] },
      logger: createLogger('silent'),
      onQueue: {
        onEnter: (priority) => queueEvents.push(`enter P${priority}`),
        onLeave: (priority, outcome) => queueEvents.push(`${outcome} P${priority}`),
      },
    });
    const repo = runtime.repository;
    accountId = (await repo.accounts.create({ providerSlug: 'openai', name: 'only', apiKey: 'sk-test-only-0123456789', maxConcurrency: 1 }, 'test')).id;
    batchKey = (await repo.keys.create({ name: 'batch', allowedIps: [] }, 'test')).plaintextKey;
    productionKey = (await repo.keys.create({ name: 'production', allowedIps: [] }, 'test')).plaintextKey;
    await repo.settings.set('priority.enabled', true, 'test');
    await repo.mappings.create({ pattern: productionKey, matchType: 'exact', priority: 0 }, 'test');
    await runtime.snapshots.reload();
    await onSharedState();
  }, 120_000);

  afterAll(async () => {
    await runtime?.stop();
    if (stateKind !== 'redis') return;
    const redis = new Redis(STATES.redis.redisUrl);
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${STATES.redis.redisKeyPrefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  });

    it('queue.max_wait_ms 0 (the default): a busy account means 429 at once, nothing waits', async () => {
      expect(runtime.snapshots.current()!.prioritySettings.queueMaxWaitMs).toBe(0);
      const holder = ticketOf(await runtime.engine.decide(view(batchKey)));
      let queued = false;
      const outcome = await runtime.engine.decide(view(productionKey), { onQueued: () => (queued = true) });
      expect((outcome.decision as Deny).code).toBe('pool_exhausted');
      expect(queued).toBe(false);
      runtime.engine.release(holder);
    });

    it('a P7 then a P0 request wait; on release the P0 one is admitted first, then the P7', async () => {
      await setQueue(20_000);
      queueEvents.length = 0;
      const holder = ticketOf(await runtime.engine.decide(view(batchKey)));
      const p7 = waiting(batchKey);
      expect(await p7.queued).toBe(20_000);
      const p0 = waiting(productionKey);
      await p0.queued;
      const order: string[] = [];
      void p7.outcome.then(() => order.push('P7'));
      void p0.outcome.then(() => order.push('P0'));

      runtime.engine.release(holder);
      const first = await p0.outcome;
      expect(priorityOf(first)).toBe('0');
      // The P7 request still waits: the only slot is the P0 request's now.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(order).toEqual(['P0']);

      runtime.engine.release(ticketOf(first));
      const second = await p7.outcome;
      expect(priorityOf(second)).toBe('7');
      expect(order).toEqual(['P0', 'P7']);
      runtime.engine.release(ticketOf(second));
      expect(queueEvents).toEqual(['enter P7', 'enter P0', 'admitted P0', 'admitted P7']);
      expect(await inFlight()).toBe(0);
    });

    it('a slot freed by an observed response (observe with release) wakes the queue too', async () => {
      const holder = ticketOf(await runtime.engine.decide(view(batchKey)));
      const next = waiting(productionKey);
      await next.queued;
      await runtime.engine.observe(holder, 200, {}, { release: true });
      runtime.engine.release(ticketOf(await next.outcome));
      expect(await inFlight()).toBe(0);
    });

    it('a wait past queue.max_wait_ms gets the 429 it would have got at once', async () => {
      await setQueue(300);
      queueEvents.length = 0;
      const holder = ticketOf(await runtime.engine.decide(view(batchKey)));
      const startedAt = performance.now();
      const late = waiting(productionKey);
      expect(await late.queued).toBe(300);
      const denial = (await late.outcome).decision as Deny;
      expect({ status: denial.status, code: denial.code }).toEqual({ status: 429, code: 'pool_exhausted' });
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(250); // it did wait (lower bound only)
      expect(queueEvents).toEqual(['enter P0', 'timed_out P0']);
      runtime.engine.release(holder);
      expect(await inFlight()).toBe(0);
    });

    it('a request whose client goes away leaves the queue at once and never takes the slot', async () => {
      await setQueue(20_000);
      queueEvents.length = 0;
      const holder = ticketOf(await runtime.engine.decide(view(batchKey)));
      const gone = new AbortController();
      const abandoned = waiting(productionKey, { signal: gone.signal });
      const behind = waiting(batchKey);
      await Promise.all([abandoned.queued, behind.queued]);
      gone.abort();
      expect((await abandoned.outcome).decision.kind).toBe('deny');
      // The slot goes to the request that is still there, not to the abandoned P0 one.
      runtime.engine.release(holder);
      const admitted = await behind.outcome;
      expect(priorityOf(admitted)).toBe('7');
      runtime.engine.release(ticketOf(admitted));
      expect(queueEvents).toEqual(['enter P0', 'enter P7', 'cancelled P0', 'admitted P7']);
      expect(await inFlight()).toBe(0);
    });

    it('only a decision that waits reads the gone signal: an adapter builds it on first read (LazyAbort), and aborting it leaves the queue', async () => {
      await setQueue(20_000);
      queueEvents.length = 0;
      let reads = 0;
      const counted = (gone: LazyAbort): DecideOptions => ({
        get signal() {
          reads++;
          return gone.signal;
        },
        onQueued: gone.onQueued,
      });
      const holder = ticketOf(await runtime.engine.decide(view(batchKey), counted(new LazyAbort())));
      expect(reads).toBe(0);
      let entered: () => void = () => undefined;
      const queued = new Promise<void>((resolve) => (entered = resolve));
      const gone = new LazyAbort(() => entered());
      const abandoned = runtime.engine.decide(view(productionKey), counted(gone));
      await queued;
      expect(reads).toBeGreaterThan(0);
      gone.abort();
      expect((await abandoned).decision.kind).toBe('deny');
      runtime.engine.release(holder);
      expect(queueEvents).toEqual(['enter P0', 'cancelled P0']);
      expect(await inFlight()).toBe(0);
      // Aborted before anyone read it: the signal is born aborted.
      const early = new LazyAbort();
      early.abort();
      expect(early.signal.aborted).toBe(true);
    });

    it('a full queue (queue.max_length) answers 429 at once', async () => {
      await setQueue(20_000, 1);
      queueEvents.length = 0;
      const holder = ticketOf(await runtime.engine.decide(view(batchKey)));
      const gone = new AbortController();
      const first = waiting(batchKey, { signal: gone.signal });
      await first.queued;
      const refused = await runtime.engine.decide(view(productionKey));
      expect((refused.decision as Deny).code).toBe('pool_exhausted');
      gone.abort();
      await first.outcome;
      runtime.engine.release(holder);
      expect(queueEvents).toEqual(['enter P7', 'full P0', 'cancelled P7']);
      expect(await inFlight()).toBe(0);
    });

    it('ran on the rate state under test throughout (Redis: no decision fell back to the per-replica state)', () => {
      if (runtime.sharedState !== null) expect(runtime.sharedState.fallbackCount).toBe(fallbacksAtStart);
    });
});
