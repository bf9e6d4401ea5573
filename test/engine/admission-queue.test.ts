// The admission queue on its own, over a pool of counted slots standing in for the rate state (the port the queue
// calls is one function): who retries first, how waits end, and that no admission outlives an abandoned wait.
import { describe, expect, it } from 'vitest';
import { AdmissionQueue, type Attempt, type WaitOutcome, type WaitRequest } from '../../src/admission-queue.js';

/** Slots of one pool: an attempt takes one if free. */
class Slots {
  attempts: string[] = [];
  constructor(public free: number) {}
  attempt(name: string): Promise<Attempt<string, string>> {
    this.attempts.push(name);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve({ kind: 'admitted', value: name });
    }
    return Promise.resolve({ kind: 'refused', value: `429 for ${name}`, waitable: true, freesInMs: null });
  }
}

function events(): { log: Array<[number, WaitOutcome]>; onLeave: (p: number, o: WaitOutcome) => void } {
  const log: Array<[number, WaitOutcome]> = [];
  return { log, onLeave: (priority, outcome) => log.push([priority, outcome]) };
}

function request(slots: Slots, name: string, priority: number, extra: Partial<WaitRequest<string, string>> = {}): WaitRequest<string, string> {
  return {
    pool: 'openai',
    priority,
    maxWaitMs: 60_000,
    maxLength: 100,
    refusal: `initial 429 for ${name}`,
    attempt: () => slots.attempt(name),
    undo: () => slots.free++,
    ...extra,
  };
}

describe('AdmissionQueue', () => {
  it('a released slot goes to the highest priority first, then FIFO within a priority', async () => {
    const slots = new Slots(0);
    const queue = new AdmissionQueue<string, string>();
    const admitted: string[] = [];
    const waits = [
      ['p7-first', 7],
      ['p7-second', 7],
      ['p0', 0],
      ['p3', 3],
    ].map(([name, priority]) => queue.wait(request(slots, name as string, priority as number)).then((r) => r.kind === 'admitted' && admitted.push(r.value)));
    expect(queue.size).toBe(4);
    for (let i = 0; i < 4; i++) {
      const before = admitted.length;
      slots.free++;
      queue.notify('openai');
      while (admitted.length === before) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(waits);
    expect(admitted).toEqual(['p0', 'p3', 'p7-first', 'p7-second']);
    expect(queue.size).toBe(0);
    expect(queue.hasWaiters('openai')).toBe(false);
  });

  it('only the head retries: requests behind it never attempt while it waits', async () => {
    const slots = new Slots(0);
    const queue = new AdmissionQueue<string, string>();
    const abort = new AbortController();
    const head = queue.wait(request(slots, 'head', 0, { signal: abort.signal }));
    const behind = queue.wait(request(slots, 'behind', 5, { signal: abort.signal }));
    for (let i = 0; i < 3; i++) queue.notify('openai');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(new Set(slots.attempts)).toEqual(new Set(['head']));
    abort.abort();
    await Promise.all([head, behind]);
  });

  it('a cancelled wait leaves at once with its refusal, and the next in line moves up', async () => {
    const slots = new Slots(0);
    const { log, onLeave } = events();
    const queue = new AdmissionQueue<string, string>({ onLeave });
    const abort = new AbortController();
    const cancelled = queue.wait(request(slots, 'gone', 0, { signal: abort.signal }));
    const next = queue.wait(request(slots, 'next', 7));
    abort.abort();
    expect(await cancelled).toMatchObject({ kind: 'refused' });
    expect(queue.size).toBe(1);
    slots.free = 1;
    queue.notify('openai');
    expect(await next).toEqual({ kind: 'admitted', value: 'next' });
    expect(log).toEqual([
      [0, 'cancelled'],
      [7, 'admitted'],
    ]);
  });

  it('an admission that lands after its wait was cancelled is given back at once, never handed out', async () => {
    let finishAttempt: (result: Attempt<string, string>) => void = () => undefined;
    const undone: string[] = [];
    const queue = new AdmissionQueue<string, string>();
    const abort = new AbortController();
    const waiting = queue.wait({
      pool: 'openai',
      priority: 0,
      maxWaitMs: 60_000,
      maxLength: 10,
      refusal: '429',
      attempt: () => new Promise((resolve) => (finishAttempt = resolve)),
      undo: (late) => undone.push(late),
      signal: abort.signal,
    });
    abort.abort(); // Envoy reset the stream while the attempt was in flight
    expect(await waiting).toEqual({ kind: 'refused', value: '429' });
    finishAttempt({ kind: 'admitted', value: 'lease-1' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(undone).toEqual(['lease-1']);
  });

  it('an already aborted request never enters', async () => {
    const queue = new AdmissionQueue<string, string>();
    const abort = new AbortController();
    abort.abort();
    expect(await queue.wait(request(new Slots(0), 'x', 0, { signal: abort.signal }))).toEqual({ kind: 'refused', value: 'initial 429 for x' });
    expect(queue.size).toBe(0);
  });

  it('a full queue refuses at once (429 as today)', async () => {
    const slots = new Slots(0);
    const { log, onLeave } = events();
    const queue = new AdmissionQueue<string, string>({ onLeave });
    const abort = new AbortController();
    const first = queue.wait(request(slots, 'first', 7, { maxLength: 1, signal: abort.signal }));
    expect(await queue.wait(request(slots, 'second', 0, { maxLength: 1 }))).toEqual({ kind: 'refused', value: 'initial 429 for second' });
    expect(log).toEqual([[0, 'full']]);
    abort.abort();
    await first;
  });

  it('a wait ends at its deadline with the last refusal', async () => {
    const slots = new Slots(0);
    const { log, onLeave } = events();
    const queue = new AdmissionQueue<string, string>({ onLeave });
    expect(await queue.wait(request(slots, 'x', 2, { maxWaitMs: 30 }))).toEqual({ kind: 'refused', value: '429 for x' });
    expect(log).toEqual([[2, 'timed_out']]);
    expect(queue.hasWaiters('openai')).toBe(false);
  });

  it('answers at once when waiting cannot help: nothing frees before the deadline, or the pool turned unhealthy', async () => {
    const { log, onLeave } = events();
    const queue = new AdmissionQueue<string, string>({ onLeave });
    // A 60 s wait that resolved within the test's timeout did not sit out its wait.
    const late = queue.wait({
      ...request(new Slots(0), 'late', 1),
      attempt: () => Promise.resolve({ kind: 'refused', value: 'resets in 2 min', waitable: true, freesInMs: 120_000 }),
    });
    expect(await late).toEqual({ kind: 'refused', value: 'resets in 2 min' });
    const unhealthy = queue.wait({
      ...request(new Slots(0), 'unhealthy', 1),
      attempt: () => Promise.resolve({ kind: 'refused', value: '503', waitable: false, freesInMs: null }),
    });
    expect(await unhealthy).toEqual({ kind: 'refused', value: '503' });
    expect(log).toEqual([
      [1, 'timed_out'],
      [1, 'refused'],
    ]);
  });

  it('retries by itself at the instant the store said an account frees up (no release needed)', async () => {
    let attempts = 0;
    const queue = new AdmissionQueue<string, string>();
    const result = await queue.wait({
      ...request(new Slots(0), 'x', 0),
      attempt: () =>
        Promise.resolve(
          ++attempts < 3 ? { kind: 'refused', value: '429', waitable: true, freesInMs: 5 } : { kind: 'admitted', value: 'after the window rolled' },
        ),
    });
    expect(result).toEqual({ kind: 'admitted', value: 'after the window rolled' });
    expect(attempts).toBe(3);
  });

  it('an attempt that throws (a bug) rejects that wait only; the next in line still gets its turn', async () => {
    const slots = new Slots(0);
    const queue = new AdmissionQueue<string, string>();
    const broken = queue.wait({ ...request(slots, 'broken', 0), attempt: () => Promise.reject(new Error('boom')) });
    const next = queue.wait(request(slots, 'next', 1));
    await expect(broken).rejects.toThrow('boom');
    slots.free = 1;
    queue.notify('openai');
    expect(await next).toEqual({ kind: 'admitted', value: 'next' });
  });
});
