import { describe, expect, it } from 'vitest';
import { WriteBuffer } from '../../src/stores/write-buffer.js';
import type { DurableWrites } from '../../src/ports.js';
import type { AuditEntry } from '../../src/catalog/audit/rows.js';
import type { UsageBucket } from '../../src/catalog/usage/rows.js';

/** A DurableWrites that records what reached it and can be switched off like a database outage. */
class RecordingWrites implements DurableWrites {
  down = false;
  audits: AuditEntry[] = [];
  invalidated: string[] = [];
  touched: string[] = [];
  usage: UsageBucket[] = [];

  async appendAudit(entries: readonly AuditEntry[]): Promise<void> {
    this.fail();
    this.audits.push(...entries);
  }
  async markAccountInvalid(accountId: string): Promise<void> {
    this.fail();
    this.invalidated.push(accountId);
  }
  async touchKeys(keyIds: readonly string[]): Promise<void> {
    this.fail();
    this.touched.push(...keyIds);
  }
  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    this.fail();
    this.usage.push(...buckets);
  }
  private fail(): void {
    if (this.down) throw new Error('database unreachable');
  }
}

function bufferOver(target: DurableWrites, maxPending = 1000) {
  const errors: unknown[] = [];
  const drops: number[] = [];
  const buffer = new WriteBuffer({
    target,
    maxPending,
    flushIntervalMs: 60_000,
    onFlushError: (error) => errors.push(error),
    onDrop: (_now, total) => drops.push(total),
  });
  return { buffer, errors, drops };
}

describe('WriteBuffer', () => {
  it('aggregates usage per account per minute bucket', async () => {
    const target = new RecordingWrites();
    const { buffer } = bufferOver(target);
    buffer.recordUsage('a', 120_000, 'success', 10);
    buffer.recordUsage('a', 179_999, 'rate_limited', 5);
    buffer.recordUsage('a', 180_000, 'server_error', 7);
    buffer.recordUsage('b', 120_500, 'client_error', 1);
    await buffer.flush();
    const byKey = Object.fromEntries(target.usage.map((u) => [`${u.accountId}@${u.bucketStart.getTime()}`, u]));
    expect(byKey['a@120000']).toMatchObject({ requests: 2, successes: 1, rateLimited: 1, latencyMsSum: 15 });
    expect(byKey['a@180000']).toMatchObject({ requests: 1, serverErrors: 1 });
    expect(byKey['b@120000']).toMatchObject({ requests: 1, clientErrors: 1 });
    expect(buffer.pending).toBe(0);
  });

  it('keeps everything through an outage and writes it exactly once afterwards', async () => {
    const target = new RecordingWrites();
    const { buffer, errors } = bufferOver(target);
    target.down = true;
    buffer.audit({ keyId: 'k1', action: 'denied_ip', actor: 'keypool' });
    buffer.invalidateAccount('acc-1', 'upstream answered 401', 'keypool');
    buffer.touchKey('k1', 1_000);
    buffer.recordUsage('acc-1', 60_000, 'success', 3);
    await buffer.flush();
    buffer.recordUsage('acc-1', 60_001, 'success', 4);
    await buffer.flush();
    expect(errors.length).toBe(2);
    expect(target.audits).toHaveLength(0);
    expect(buffer.databaseReachable).toBe(false);

    target.down = false;
    await buffer.flush();
    await buffer.flush();
    expect(target.audits.map((a) => a.action)).toEqual(['denied_ip']);
    expect(target.invalidated).toEqual(['acc-1']);
    expect(target.touched).toEqual(['k1']);
    expect(target.usage).toHaveLength(1);
    expect(target.usage[0]).toMatchObject({ requests: 2, successes: 2, latencyMsSum: 7 });
    expect(buffer.databaseReachable).toBe(true);
  });

  it('drops beyond its bound and counts what it dropped', async () => {
    const target = new RecordingWrites();
    const { buffer, drops } = bufferOver(target, 3);
    for (let i = 0; i < 5; i += 1) buffer.audit({ keyId: `k${i}`, action: 'denied_ip', actor: 'keypool' });
    expect(buffer.pending).toBe(3);
    expect(buffer.droppedTotal).toBe(2);
    expect(drops).toEqual([1, 2]);
    await buffer.stop();
    expect(target.audits).toHaveLength(3);
  });

  it('coalesces repeated touches and invalidations without using more room', async () => {
    const target = new RecordingWrites();
    const { buffer } = bufferOver(target, 2);
    buffer.touchKey('k1', 5);
    buffer.touchKey('k1', 9);
    buffer.invalidateAccount('a', 'r', 'x');
    buffer.invalidateAccount('a', 'r', 'x');
    expect(buffer.pending).toBe(2);
    expect(buffer.droppedTotal).toBe(0);
  });
});
