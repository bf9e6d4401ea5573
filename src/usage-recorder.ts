// One response's token usage into the accounting: the account's and the key's/tenant's minute buckets (through the
// bounded write buffer: never a database round trip on the response path) and the token metrics. Adapters call it
// once per response, through Engine.recordUsage, when the body has been read to its end (src/core/usage-stream.ts).
import type { TokenUsage } from './core/usage.js';
import { costUsd, priceFor } from './core/usage-cost.js';
import type { SnapshotSource, Ticket } from './ports.js';
import type { WriteBuffer } from './stores/write-buffer.js';

/** Token metrics hook: the tenant is a tenant row's id or null (the metric's label set stays operator-bounded). */
export type TokensHook = (ticket: Ticket, usage: TokenUsage, tenantRow: string | null) => void;

export interface UsageRecorderOptions {
  readonly writes: Pick<WriteBuffer, 'recordTokens'>;
  readonly snapshots: SnapshotSource;
  readonly onTokens?: TokensHook | undefined;
}

export class UsageRecorder {
  constructor(private readonly options: UsageRecorderOptions) {}

  /** `model`: what the response body named, for the price (src/core/usage-cost.ts); null = the provider's `*` price. */
  record(ticket: Ticket, usage: TokenUsage, model: string | null, nowMs: number): void {
    const tenantId = ticket.tenantId ?? null;
    const snapshot = this.options.snapshots.current();
    this.options.writes.recordTokens({
      accountId: ticket.accountId,
      keyId: ticket.keyId,
      tenantId: tenantId ?? '',
      provider: ticket.pool,
      atMs: nowMs,
      counts: {
        requests: 1,
        estimatedRequests: usage.estimated ? 1 : 0,
        inputTokens: usage.inputTokens,
        outputTokens: usage.outputTokens,
        cachedInputTokens: usage.cachedInputTokens,
        cacheCreationInputTokens: usage.cacheCreationInputTokens,
        costUsd: costUsd(usage, priceFor(snapshot?.prices?.get(ticket.pool), model)),
      },
    });
    const tenantRow = tenantId !== null && snapshot?.tenants?.has(tenantId) === true ? tenantId : null;
    this.options.onTokens?.(ticket, usage, tenantRow);
  }
}
