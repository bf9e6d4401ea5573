import { describe, expect, it } from 'vitest';
import { WriteBuffer, type RejectedWrite } from '../../src/stores/write-buffer.js';
import type { DurableWrites } from '../../src/ports.js';
import type { AuditEntry } from '../../src/catalog/audit/rows.js';
import type { TokenUsageBucket, UsageBucket } from '../../src/catalog/usage/rows.js';

/** A PostgreSQL-shaped data error (SQLSTATE 22021: a NUL byte in text). */
function dataError(): Error {
  return Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });
}

/**
 * A DurableWrites that records what reached it and can be switched off like a database outage. Like PostgreSQL, it
 * refuses a whole batch when any row holds a NUL byte (audit actor, touched key id), and writes nothing of it.
 */
class RecordingWrites implements DurableWrites {
  down = false;
  /** Only this kind fails while down (null: every kind). */
  downKind: 'audit' | 'usage' | 'tokens' | null = null;
  calls = 0;
  audits: AuditEntry[] = [];
  invalidated: string[] = [];
  touched: string[] = [];
  usage: UsageBucket[] = [];
  tokens: TokenUsageBucket[] = [];

  async appendAudit(entries: readonly AuditEntry[]): Promise<void> {
    this.fail('audit');
    if (entries.some((e) => e.actor.includes('\0'))) throw dataError();
    this.audits.push(...entries);
  }
  async markAccountInvalid(accountId: string): Promise<void> {
    this.fail();
    this.invalidated.push(accountId);
  }
  async touchKeys(keyIds: readonly string[]): Promise<void> {
    this.fail();
    if (keyIds.some((id) => id.includes('\0'))) throw dataError();
    this.touched.push(...keyIds);
  }
  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    this.fail('usage');
    this.usage.push(...buckets);
  }
  async addTokenUsage(buckets: readonly TokenUsageBucket[]): Promise<void> {
    this.fail('tokens');
    this.tokens.push(...buckets);
  }
  private fail(kind?: 'audit' | 'usage' | 'tokens'): void {
    this.calls++;
    if (this.down && (this.downKind === null || this.downKind === kind)) throw new Error('database unreachable');
  }
}

function bufferOver(target: DurableWrites, maxPending = 1000) {
  const errors: unknown[] = [];
  const drops: number[] = [];
  const rejected: RejectedWrite[] = [];
  const buffer = new WriteBuffer({
    target,
    maxPending,
    flushIntervalMs: 60_000,
    onFlushError: (error) => errors.push(error),
    onDrop: (_now, total) => drops.push(total),
    onRejected: (r) => rejected.push(r),
  });
  return { buffer, errors, drops, rejected };
}

const tokenRecord = (keyId: string, atMs: number, inputTokens: number, outputTokens: number, estimated = false) => ({
  accountId: 'acct',
  keyId,
  tenantId: 't1',
  provider: 'openai',
  atMs,
  counts: { requests: 1, estimatedRequests: estimated ? 1 : 0, inputTokens, outputTokens, cachedInputTokens: 1, cacheCreationInputTokens: 0, costUsd: 0.5 },
});

describe('WriteBuffer', () => {
  it('aggregates tokens per key, tenant and provider per minute, adds them to the account bucket, and keeps them through an outage', async () => {
    const target = new RecordingWrites();
    const { buffer, drops } = bufferOver(target, 3);
    buffer.recordUsage('acct', 120_000, 'success', 10);
    buffer.recordTokens(tokenRecord('k1', 120_001, 100, 10));
    buffer.recordTokens(tokenRecord('k1', 179_999, 50, 5, true));
    buffer.recordTokens(tokenRecord('k2', 120_000, 1, 1));
    // Bounded: a fourth distinct bucket (account 120000 + k1 + k2 make three) is dropped and counted; its tokens
    // still reach the account's bucket, which exists already.
    buffer.recordTokens(tokenRecord('k3', 120_000, 9, 9));
    expect(buffer.pending).toBe(3);
    expect(drops).toEqual([1]);
    target.down = true;
    target.downKind = 'tokens';
    await buffer.flush();
    expect(target.tokens).toEqual([]);
    expect(buffer.pending).toBe(2);
    target.down = false;
    await buffer.flush();
    expect(buffer.pending).toBe(0);
    expect(target.usage).toEqual([expect.objectContaining({ accountId: 'acct', requests: 1, inputTokens: 160, outputTokens: 25, cachedInputTokens: 4 })]);
    const k1 = target.tokens.find((t) => t.keyId === 'k1');
    expect(k1).toMatchObject({ tenantId: 't1', provider: 'openai', requests: 2, estimatedRequests: 1, inputTokens: 150, outputTokens: 15, cachedInputTokens: 2, costUsd: 1 });
    expect(k1?.bucketStart.getTime()).toBe(120_000);
    expect(target.tokens).toHaveLength(2);
  });

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
    // The invalidation's immediate write, then each flush.
    expect(errors.length).toBe(3);
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

  it('a poisoned row is dropped alone: the rest of its batch is written, reported once, counted by kind and reason', async () => {
    const target = new RecordingWrites();
    const { buffer, errors, rejected } = bufferOver(target);
    for (let i = 0; i < 10; i++) buffer.audit({ keyId: `k${i}`, action: 'denied_ip', actor: i === 6 ? 'bad\0actor' : 'keypool' });
    buffer.touchKey('good-key', 1);
    buffer.touchKey('bad\0key', 2);
    buffer.recordUsage('acc-1', 60_000, 'success', 3);
    await buffer.flush();
    expect(target.audits.map((a) => a.keyId)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k7', 'k8', 'k9']);
    expect(target.touched).toEqual(['good-key']);
    expect(target.usage).toHaveLength(1);
    expect(errors).toEqual([]);
    expect(buffer.pending).toBe(0);
    expect(buffer.databaseReachable).toBe(true);
    expect(rejected).toEqual([
      { kind: 'audit', sqlState: '22021', rejectedTotal: 1 },
      { kind: 'key_touch', sqlState: '22021', rejectedTotal: 1 },
    ]);
    // Nothing about the row itself in the report (it may hold client input).
    expect(JSON.stringify(rejected)).not.toContain('bad');
    expect(buffer.droppedByCause()).toEqual([
      { kind: 'audit', reason: 'rejected', count: 1 },
      { kind: 'key_touch', reason: 'rejected', count: 1 },
    ]);
    // Dropped for good: the next flush writes nothing again.
    const calls = target.calls;
    await buffer.flush();
    expect(target.calls).toBe(calls);
  });

  it('a kind that keeps failing does not starve the others: every later flush writes them first', async () => {
    const target = new RecordingWrites();
    const { buffer, errors } = bufferOver(target);
    target.down = true;
    target.downKind = 'audit';
    buffer.audit({ keyId: 'k1', action: 'denied_ip', actor: 'keypool' });
    buffer.touchKey('k1', 1);
    buffer.recordUsage('acc-1', 60_000, 'success', 3);
    await buffer.flush(); // audit fails: this flush ends there
    await buffer.flush(); // starts after audit: touches and usage go through, audit fails again
    expect(target.usage).toHaveLength(1);
    expect(target.touched).toEqual(['k1']);
    buffer.recordUsage('acc-1', 120_000, 'success', 3);
    await buffer.flush();
    expect(target.usage).toHaveLength(2);
    expect(target.audits).toEqual([]);
    expect(errors).toHaveLength(3);
    expect(buffer.pending).toBe(1);
    target.down = false;
    await buffer.flush();
    expect(target.audits).toHaveLength(1);
    expect(buffer.pending).toBe(0);
  });

  it('an invalidation is written at once, without waiting for the next flush', async () => {
    const target = new RecordingWrites();
    const { buffer } = bufferOver(target);
    buffer.invalidateAccount('acc-1', 'upstream answered 401', 'keypool');
    await new Promise((resolve) => setImmediate(resolve));
    expect(target.invalidated).toEqual(['acc-1']);
    expect(buffer.pending).toBe(0);
  });

  it('identical denials until the next flush become one row with a count; a flush starts a new row', async () => {
    const target = new RecordingWrites();
    const { buffer } = bufferOver(target, 10);
    const denial = { keyId: 'k1', action: 'denied_revoked' as const, actor: 'keypool', clientIp: '10.0.0.1' };
    for (let i = 0; i < 1_000; i++) buffer.auditDenial(denial);
    buffer.auditDenial({ ...denial, clientIp: '10.0.0.2' });
    buffer.auditDenial({ ...denial, action: 'denied_ip' });
    expect(buffer.pending).toBe(3);
    await buffer.flush();
    buffer.auditDenial(denial);
    await buffer.flush();
    expect(target.audits.map((a) => [a.action, a.clientIp, a.occurrences])).toEqual([
      ['denied_revoked', '10.0.0.1', 1_000],
      ['denied_revoked', '10.0.0.2', 1],
      ['denied_ip', '10.0.0.1', 1],
      ['denied_revoked', '10.0.0.1', 1],
    ]);
    expect(buffer.droppedTotal).toBe(0);
  });
});
