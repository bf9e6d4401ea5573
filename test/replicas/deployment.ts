// One keypool "deployment" for the replica tests: a fresh PostgreSQL database (migrated), the shared secrets, a unique
// Redis key prefix, and a repository in the test process to write the configuration the replicas serve and to read
// back what they wrote (usage stats, audit rows).
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Keyring } from '../../src/secrets/keyring.js';
import { parsePepper } from '../../src/secrets/pepper.js';
import { createPostgresDatabase, type TestDatabase } from '../helpers/db.js';
import { generateReplicaSecrets, type ReplicaSecrets } from '../helpers/replica.js';
import { ConfigRepository } from '../../src/catalog/repository.js';
import type { UsageBucket } from '../../src/catalog/usage/rows.js';

export const REDIS_URL = 'redis://127.0.0.1:6379';
export const ACTOR = 'replica-test';

export interface PooledAccount {
  readonly id: string;
  readonly name: string;
  /** The fake upstream key keypool injects for this account. */
  readonly upstreamKey: string;
}

export interface AccountSpec {
  readonly name: string;
  readonly rpmLimit?: number | null;
  readonly tpmLimit?: number | null;
  readonly maxConcurrency?: number | null;
  readonly tier?: number;
}

export class Deployment {
  private constructor(
    readonly db: TestDatabase,
    readonly repo: ConfigRepository,
    readonly secrets: ReplicaSecrets,
    /** Admin connection straight to the real Redis (never through a test proxy). */
    readonly redis: Redis,
  ) {}

  /** Database URL as the replicas use it (with a different port when they go through a proxy). */
  databaseUrl(port?: number): string {
    const url = new URL(this.db.url!);
    if (port !== undefined) url.port = String(port);
    return url.toString();
  }

  /** Port of the real PostgreSQL server of the test database. */
  get databasePort(): number {
    return Number(new URL(this.db.url!).port || 5432);
  }

  static async create(): Promise<Deployment> {
    const db = await createPostgresDatabase({ migrate: true });
    if (db.url === null || db.searchPath !== null) {
      await db.drop();
      throw new Error('replica tests need a database of their own (CREATEDB privilege): replicas cannot be given a search_path');
    }
    const secrets = generateReplicaSecrets();
    const repo = new ConfigRepository(db.client, {
      keyring: Keyring.parse(secrets.KEYPOOL_ENCRYPTION_KEYS),
      pepper: parsePepper(secrets.KEYPOOL_KEY_PEPPER),
    });
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    return new Deployment(db, repo, secrets, redis);
  }

  /** Creates active accounts in `provider`'s pool; upstream keys are random fake secrets. */
  async addAccounts(provider: string, specs: readonly AccountSpec[]): Promise<PooledAccount[]> {
    const created: PooledAccount[] = [];
    for (const spec of specs) {
      const upstreamKey = `sk-fake-${provider}-${spec.name}-${randomBytes(6).toString('hex')}`;
      const row = await this.repo.accounts.create(
        {
          providerSlug: provider,
          name: spec.name,
          apiKey: upstreamKey,
          rpmLimit: spec.rpmLimit ?? null,
          tpmLimit: spec.tpmLimit ?? null,
          maxConcurrency: spec.maxConcurrency ?? null,
          ...(spec.tier === undefined ? {} : { tier: spec.tier }),
        },
        ACTOR,
      );
      created.push({ id: row.id, name: row.name, upstreamKey });
    }
    return created;
  }

  /** Issues a client (system) key; returns its id and plaintext. */
  async issueKey(name: string, allowedIps?: readonly string[]): Promise<{ id: string; key: string }> {
    const issued = await this.repo.keys.create({ name, ...(allowedIps ? { allowedIps } : {}) }, ACTOR);
    return { id: issued.row.id, key: issued.plaintextKey };
  }

  /** Sum of account_usage_stats per account over every bucket of the last hour (and the next minute). */
  async usageTotals(): Promise<Map<string, UsageBucket>> {
    const now = Date.now();
    const rows = await this.repo.usage.query({ from: new Date(now - 3_600_000), to: new Date(now + 120_000) });
    const totals = new Map<string, UsageBucket>();
    for (const row of rows) {
      const prev = totals.get(row.accountId);
      totals.set(
        row.accountId,
        prev === undefined
          ? row
          : {
              ...prev,
              requests: prev.requests + row.requests,
              successes: prev.successes + row.successes,
              rateLimited: prev.rateLimited + row.rateLimited,
              clientErrors: prev.clientErrors + row.clientErrors,
              serverErrors: prev.serverErrors + row.serverErrors,
              latencyMsSum: prev.latencyMsSum + row.latencyMsSum,
            },
      );
    }
    return totals;
  }

  /** Denials recorded for one key and action (every page): the rows' occurrences, identical denials being aggregated. */
  async auditCount(keyId: string, action: 'denied_ip'): Promise<number> {
    let count = 0;
    let cursor: string | undefined;
    do {
      const page = await this.repo.audit.list({ keyId, action, limit: 1000, ...(cursor ? { cursor } : {}) });
      for (const row of page.rows) count += row.occurrences;
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    return count;
  }

  /** In-flight leases Redis holds for one account (ZCARD of its lease set, expired members included). */
  leaseCount(prefix: string, pool: string, accountId: string): Promise<number> {
    return this.redis.zcard(`${prefix}{kp:${pool}}:${accountId}:l`);
  }

  async close(prefixes: readonly string[] = []): Promise<void> {
    try {
      for (const prefix of prefixes) await deletePrefix(this.redis, prefix);
    } finally {
      this.redis.disconnect();
      await this.db.drop();
    }
  }
}

export function uniqueRedisPrefix(): string {
  return `kpreplicas:${randomBytes(5).toString('hex')}:`;
}

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}
