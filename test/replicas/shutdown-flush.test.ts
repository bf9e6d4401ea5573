// The last flush of a stopping replica (WriteBuffer.stop), in process: found by the replica fault tests, where the
// interval flush and SIGTERM meet and where a partitioned PostgreSQL answers nothing.
import { describe, expect, it } from 'vitest';
import { WriteBuffer } from '../../src/stores/write-buffer.js';
import type { DurableWrites } from '../../src/ports.js';
import type { AuditEntry } from '../../src/catalog/audit/rows.js';
import type { UsageBucket } from '../../src/catalog/usage/rows.js';

/** A database whose usage writes wait until the test lets them through (or forever: a partition). */
class GatedWrites implements DurableWrites {
  usage: UsageBucket[] = [];
  private gates: Array<() => void> = [];

  get waiting(): number {
    return this.gates.length;
  }

  open(): void {
    for (const pass of this.gates.splice(0)) pass();
  }

  async appendAudit(_entries: readonly AuditEntry[]): Promise<void> {}
  async markAccountInvalid(): Promise<void> {}
  async touchKeys(): Promise<void> {}
  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    await new Promise<void>((resolve) => this.gates.push(resolve));
    this.usage.push(...buckets);
  }
}

async function until(predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 1));
  }
}

function requestsWritten(target: GatedWrites): number {
  return target.usage.reduce((n, bucket) => n + bucket.requests, 0);
}

describe('WriteBuffer.stop', () => {
  it('writes what arrived while an interval flush was running (the last responses of a drain)', async () => {
    const target = new GatedWrites();
    const buffer = new WriteBuffer({ target, maxPending: 100, flushIntervalMs: 60_000 });
    buffer.recordUsage('a', 60_000, 'success', 1);
    void buffer.flush(); // the interval flush: takes the first batch and waits on the database
    await until(() => target.waiting === 1);
    buffer.recordUsage('a', 60_000, 'success', 1); // a response completed while draining
    const stopping = buffer.stop(5_000);
    target.open();
    // Before the fix stop() returned with the running flush, and this second write never came.
    await until(() => target.waiting === 1);
    target.open();
    expect(await stopping).toBe(true);
    expect(requestsWritten(target)).toBe(2);
    expect(buffer.pending).toBe(0);
  });

  it('gives up after its timeout when the database never answers, and says the writes were not taken', async () => {
    const target = new GatedWrites();
    const buffer = new WriteBuffer({ target, maxPending: 100, flushIntervalMs: 60_000 });
    buffer.recordUsage('a', 60_000, 'success', 1);
    const startedAt = Date.now();
    expect(await buffer.stop(200)).toBe(false);
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    expect(target.waiting).toBe(1);
    expect(requestsWritten(target)).toBe(0);
  });
});
