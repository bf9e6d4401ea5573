// Requests that found their pool exhausted wait here (queue.max_wait_ms, queue.max_length) instead of getting a 429
// at once. The queue decides only WHO retries admission first: every retry goes through the rate state's own atomic
// admit, so admission stays exact across replicas. Per pool, only the head (highest priority, then oldest) retries;
// the others wait behind it, so freed capacity goes to priority 0 before priority 7 and first come first served
// within a priority.
//
// The head retries when:
// - a lease of its pool is released on this replica (notify), at once;
// - the instant the store said an account frees up (a window rolling over, a cooldown ending) comes;
// - RECHECK_MS passed: a release on ANOTHER replica (or a lease expiring) is invisible here, so the head re-checks
//   at that interval while it waits. With Redis that is one admission script per pool and replica every RECHECK_MS
//   while anything waits, and a slot freed elsewhere reaches a waiter here at most RECHECK_MS late.
// A wait ends with admission, at its deadline (the last refusal: 429 as today), when the store's answer shows it
// cannot succeed in time (pool unhealthy, state unavailable, the next free instant past the deadline), or when the
// caller's signal aborts (Envoy reset the stream). An admission that lands after its wait ended is undone at once.
import { PriorityWaitList } from './core/wait-list.js';

/** A waiting request re-checks its pool at least this often (releases on other replicas are not seen locally). */
export const RECHECK_MS = 50;

/** How a wait ended (metrics label). `full`: the queue had no room, the request never waited. */
export type WaitOutcome = 'admitted' | 'timed_out' | 'cancelled' | 'refused' | 'full';

/** What one admission attempt gave: an admission, or a refusal and whether it may still change by waiting. */
export type Attempt<A, R> =
  | { readonly kind: 'admitted'; readonly value: A }
  | {
      readonly kind: 'refused';
      readonly value: R;
      /** false: waiting cannot help (every account unhealthy, state unavailable): answer now. */
      readonly waitable: boolean;
      /** When the store knows the next instant an account frees up: ms from now; null when a slot frees whenever an in-flight request ends. */
      readonly freesInMs: number | null;
    };

export interface WaitRequest<A, R> {
  readonly pool: string;
  /** 0 = highest. */
  readonly priority: number;
  readonly maxWaitMs: number;
  /** The queue's bound across every pool of this replica; a request finding it full is refused at once. */
  readonly maxLength: number;
  /** The answer if the wait ends without an admission before any attempt refused it (the queue was busy). */
  readonly refusal: R;
  /** One admission attempt through the rate state. */
  readonly attempt: () => Promise<Attempt<A, R>>;
  /** Gives back an admission that came after its wait ended (cancelled or expired). */
  readonly undo: (admitted: A) => void;
  /** Ends the wait at once (the client or Envoy's stream went away). */
  readonly signal?: AbortSignal | undefined;
  /** Called once if the request does start waiting (not when it is refused at the door). */
  readonly onEnter?: (() => void) | undefined;
}

export type WaitResult<A, R> = { readonly kind: 'admitted'; readonly value: A } | { readonly kind: 'refused'; readonly value: R };

export interface AdmissionQueueEvents {
  /** A request started waiting at `priority`. Must not throw. */
  readonly onEnter?: (priority: number) => void;
  /** A wait ended (`full`: never started; waitedMs 0). Must not throw. */
  readonly onLeave?: (priority: number, outcome: WaitOutcome, waitedMs: number) => void;
}

interface Waiter<A, R> {
  readonly request: WaitRequest<A, R>;
  readonly enteredAt: number;
  readonly resolve: (result: WaitResult<A, R>) => void;
  readonly reject: (error: unknown) => void;
  refusal: R;
  done: boolean;
  deadline: NodeJS.Timeout | null;
  onAbort: (() => void) | null;
}

interface PoolQueue<A, R> {
  readonly list: PriorityWaitList<Waiter<A, R>>;
  /** The waiter whose attempt is in flight (at most one per pool). */
  attempting: Waiter<A, R> | null;
  /** A wake-up came while an attempt was in flight: retry right after it. */
  again: boolean;
  wake: NodeJS.Timeout | null;
}

export class AdmissionQueue<A, R> {
  private readonly pools = new Map<string, PoolQueue<A, R>>();
  private waiting = 0;

  constructor(private readonly events: AdmissionQueueEvents = {}) {}

  /** Requests waiting on this replica, all pools. */
  get size(): number {
    return this.waiting;
  }

  /** True while requests of `pool` wait: a new request of the pool queues behind them instead of overtaking. */
  hasWaiters(pool: string): boolean {
    return this.pools.has(pool);
  }

  /** Waits for an admission; see the file comment. Rejects only when an attempt throws (a bug, not a refusal). */
  wait(request: WaitRequest<A, R>): Promise<WaitResult<A, R>> {
    if (request.signal?.aborted) return Promise.resolve({ kind: 'refused', value: request.refusal });
    if (this.waiting >= request.maxLength) {
      this.events.onLeave?.(request.priority, 'full', 0);
      return Promise.resolve({ kind: 'refused', value: request.refusal });
    }
    let queue = this.pools.get(request.pool);
    if (queue === undefined) {
      queue = { list: new PriorityWaitList(Number.POSITIVE_INFINITY), attempting: null, again: false, wake: null };
      this.pools.set(request.pool, queue);
    }
    const poolQueue = queue;
    return new Promise<WaitResult<A, R>>((resolve, reject) => {
      const waiter: Waiter<A, R> = {
        request,
        enteredAt: performance.now(),
        resolve,
        reject,
        refusal: request.refusal,
        done: false,
        deadline: null,
        onAbort: null,
      };
      poolQueue.list.push(request.priority, waiter);
      this.waiting++;
      this.events.onEnter?.(request.priority);
      request.onEnter?.();
      waiter.deadline = setTimeout(() => this.finish(waiter, 'timed_out'), request.maxWaitMs);
      if (request.signal) {
        waiter.onAbort = () => this.finish(waiter, 'cancelled');
        request.signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.pump(request.pool);
    });
  }

  /** A lease of `pool` was released on this replica: its head retries now. */
  notify(pool: string): void {
    if (this.pools.has(pool)) this.pump(pool);
  }

  private pump(pool: string): void {
    const queue = this.pools.get(pool);
    if (queue === undefined) return;
    if (queue.attempting !== null) {
      queue.again = true;
      return;
    }
    if (queue.wake !== null) clearTimeout(queue.wake);
    queue.wake = null;
    const head = queue.list.peek();
    if (head === undefined) {
      this.pools.delete(pool);
      return;
    }
    queue.again = false;
    queue.attempting = head;
    let attempt: Promise<Attempt<A, R>>;
    try {
      attempt = head.request.attempt();
    } catch (error) {
      attempt = Promise.reject(error);
    }
    attempt.then(
      (result) => this.settle(pool, queue, head, result),
      (error: unknown) => {
        queue.attempting = null;
        if (head.done) this.pump(pool);
        else {
          this.finish(head, 'refused', false);
          head.reject(error);
        }
      },
    );
  }

  private settle(pool: string, queue: PoolQueue<A, R>, head: Waiter<A, R>, result: Attempt<A, R>): void {
    queue.attempting = null;
    if (head.done) {
      // Its wait ended (deadline, cancelled) while the attempt ran: nobody can use this admission.
      if (result.kind === 'admitted') head.request.undo(result.value);
      this.pump(pool);
      return;
    }
    if (result.kind === 'admitted') {
      this.finish(head, 'admitted', false); // and the next head tries at once: it may fit too
      head.resolve(result);
      return;
    }
    head.refusal = result.value;
    const remainingMs = head.request.maxWaitMs - (performance.now() - head.enteredAt);
    if (!result.waitable) return this.finish(head, 'refused');
    // Nothing frees before this wait's deadline: answer now rather than hold the request for a sure 429.
    if (result.freesInMs !== null && result.freesInMs > remainingMs) return this.finish(head, 'timed_out');
    if (queue.again) {
      this.pump(pool);
      return;
    }
    const delayMs = Math.max(1, Math.min(RECHECK_MS, result.freesInMs ?? RECHECK_MS));
    queue.wake = setTimeout(() => this.pump(pool), delayMs);
  }

  /** Ends a wait: out of its list, timers and listener dropped, counted; resolved with its last refusal unless told not to. */
  private finish(waiter: Waiter<A, R>, outcome: WaitOutcome, answer = true): void {
    if (waiter.done) return;
    waiter.done = true;
    const { request } = waiter;
    if (waiter.deadline !== null) clearTimeout(waiter.deadline);
    if (waiter.onAbort !== null) request.signal?.removeEventListener('abort', waiter.onAbort);
    const queue = this.pools.get(request.pool);
    const wasHead = queue?.list.peek() === waiter;
    queue?.list.remove(request.priority, waiter);
    this.waiting--;
    this.events.onLeave?.(request.priority, outcome, performance.now() - waiter.enteredAt);
    if (answer) waiter.resolve({ kind: 'refused', value: waiter.refusal });
    // The head leaving lets the next one try (a waiter leaving from the middle changes nothing for the head).
    if (wasHead && queue !== undefined && queue.attempting === null) this.pump(request.pool);
  }
}
