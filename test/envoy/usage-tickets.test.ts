import { describe, expect, it } from 'vitest';
import { ENTRIES_BEFORE_FIRST_OBSERVER, UsageTickets } from '../../src/adapters/envoy/usage-tickets.js';
import type { Ticket } from '../../src/ports.js';

const ticket = (leaseId: string): Ticket => ({
  pool: 'openai',
  accountId: 'a',
  accountName: 'a',
  leaseId,
  keyId: 'k',
  startedAtMs: 0,
  holdsConcurrencySlot: false,
  model: null,
});

describe('UsageTickets', () => {
  it('hands a ticket over once, by request id', () => {
    const tickets = new UsageTickets({ maxEntries: 10, ttlMs: 1_000 });
    tickets.register('r1', ticket('l1'), 0);
    tickets.register(null, ticket('ignored'), 0);
    tickets.register('', ticket('ignored'), 0);
    expect(tickets.size).toBe(1);
    expect(tickets.take('r2', 0)).toBeNull();
    expect(tickets.take(null, 0)).toBeNull();
    expect(tickets.take('r1', 10)?.leaseId).toBe('l1');
    expect(tickets.take('r1', 10)).toBeNull();
  });

  it('a later registration under the same id replaces the earlier (the last retry attempt is the one answered)', () => {
    const tickets = new UsageTickets({ maxEntries: 10, ttlMs: 1_000 });
    tickets.register('r', ticket('attempt-1'), 0);
    tickets.register('r', ticket('attempt-2'), 5);
    expect(tickets.size).toBe(1);
    expect(tickets.take('r', 10)?.leaseId).toBe('attempt-2');
  });

  it('keeps only a few dozen tickets until an observer stream has connected (a gateway without one keeps none for long)', () => {
    const tickets = new UsageTickets({ maxEntries: 10_000, ttlMs: 60_000 });
    for (let i = 0; i < 1_000; i++) tickets.register(`r${i}`, ticket(`l${i}`), i);
    expect(tickets.size).toBe(ENTRIES_BEFORE_FIRST_OBSERVER);
    // The newest survive: the requests decided just before the first observer stream arrived are still handed over.
    expect(tickets.take('r999', 1_000)?.leaseId).toBe('l999');
    expect(tickets.take('r0', 1_000)).toBeNull();
    tickets.observerConnected();
    for (let i = 0; i < 1_000; i++) tickets.register(`s${i}`, ticket(`m${i}`), 2_000 + i);
    expect(tickets.size).toBe(1_000 + ENTRIES_BEFORE_FIRST_OBSERVER - 1);
  });

  it('is bounded in entries (oldest out first) and in age', () => {
    const tickets = new UsageTickets({ maxEntries: 3, ttlMs: 1_000 });
    for (let i = 0; i < 10; i++) tickets.register(`r${i}`, ticket(`l${i}`), i);
    expect(tickets.size).toBe(3);
    expect(tickets.take('r6', 10)).toBeNull();
    expect(tickets.take('r7', 10)?.leaseId).toBe('l7');
    // Too old when taken: null. Expired entries also leave on the next registration.
    expect(tickets.take('r8', 1_009)).toBeNull();
    tickets.register('late', ticket('late'), 5_000);
    expect(tickets.size).toBe(1);
    expect(tickets.take('late', 5_000)?.leaseId).toBe('late');
  });
});
