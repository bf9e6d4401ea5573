// The dashboard's reads at the sizes it must stay usable at, on PostgreSQL: a pool of 1,000 accounts (paged, live
// state read for one page only) and 100,000 client keys (server-side search and keyset pagination). Correctness is
// asserted; the durations are printed for the record, never asserted (the runner is shared).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPostgresDatabase, describePostgres, type TestDatabase } from '../helpers/db.js';
import { startHarness, type Harness } from './harness.js';

const ACCOUNTS = 1_000;
const KEYS = 100_000;

describePostgres('dashboard reads at 1,000 accounts and 100,000 keys (PostgreSQL)', () => {
  let db: TestDatabase;
  let h: Harness;

  beforeAll(async () => {
    db = await createPostgresDatabase({ max: 6 });
    h = await startHarness({ db });
    // Accounts through the repository (their keys are encrypted like real ones), ten at a time.
    for (let start = 0; start < ACCOUNTS; start += 10) {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          h.repository.accounts.create({ providerSlug: 'openai', name: `scale-${String(start + i).padStart(4, '0')}`, apiKey: `sk-scale-${start + i}-00000000000000` }, 'scale-test'),
        ),
      );
    }
    // Keys in one statement: digests of made-up keys (nothing here authenticates with them).
    await db.client.query(
      `INSERT INTO system_api_keys (name, tenant_id, key_prefix, key_hash, created_by, updated_by)
       SELECT 'key-' || lpad(i::text, 6, '0'), 'tenant-' || (i % 50), 'kp_' || substr(md5(i::text), 1, 8),
              encode(sha256(('scale-key-' || i)::bytea), 'hex'), 'scale-test', 'scale-test'
       FROM generate_series(0, $1::int - 1) AS i`,
      [KEYS],
    );
    // Let the snapshot reloads the inserts triggered finish, so they do not share the CPU with the reads below.
    await h.holder.reload();
  }, 300_000);

  afterAll(async () => {
    await h?.close();
    await db?.drop();
  });

  async function timed<T>(what: string, run: () => Promise<T>): Promise<T> {
    const startedAt = performance.now();
    const result = await run();
    console.log(`[dashboard scale] ${what}: ${(performance.now() - startedAt).toFixed(1)} ms`);
    return result;
  }

  it('pool: a page of 1,000 accounts with live state, and the overview counts them all', async () => {
    await h.api('GET', '/admin/providers/openai/pool?limit=50'); // warm-up (prepared statements, JIT)
    const page = await timed('pool page 50 of 1,000 accounts', () => h.api('GET', '/admin/providers/openai/pool?limit=50&offset=950'));
    expect(page.status).toBe(200);
    expect(page.json.total).toBe(ACCOUNTS);
    expect(page.json.items).toHaveLength(50);
    expect(page.json.items[0]).toMatchObject({ name: 'scale-0950', state: 'healthy' });
    const search = await timed('pool name filter', () => h.api('GET', '/admin/providers/openai/pool?q=scale-09'));
    expect(search.json.total).toBe(100);
    const overview = await timed('overview with 1,000 accounts', () => h.api('GET', '/admin/dashboard/overview'));
    const openai = (overview.json.providers as Array<{ slug: string; accounts: { total: number; healthy: number } }>).find((p) => p.slug === 'openai');
    expect(openai?.accounts).toMatchObject({ total: ACCOUNTS, healthy: ACCOUNTS });
  });

  it('keys: first page, a search and the next pages among 100,000 keys', async () => {
    await h.api('GET', '/admin/keys?limit=50');
    const first = await timed('keys first page of 100,000', () => h.api('GET', '/admin/keys?limit=50'));
    expect(first.json.items).toHaveLength(50);
    expect(first.json.items[0].name).toBe('key-000000');
    const second = await timed('keys next page (cursor)', () => h.api('GET', `/admin/keys?limit=50&cursor=${first.json.next_cursor}`));
    expect(second.json.items[0].name).toBe('key-000050');
    const deep = await timed('keys search "key-0999"', () => h.api('GET', '/admin/keys?q=key-0999&limit=50'));
    expect(deep.json.items.map((k: { name: string }) => k.name).slice(0, 2)).toEqual(['key-099900', 'key-099901']);
    const rest = await h.api('GET', `/admin/keys?q=key-0999&limit=50&cursor=${deep.json.next_cursor}`);
    expect(rest.json.items).toHaveLength(50);
    expect(rest.json.next_cursor).toBeNull();
    const none = await timed('keys search with no match', () => h.api('GET', '/admin/keys?q=no-such-key&limit=50'));
    expect(none.json).toMatchObject({ items: [], next_cursor: null });
  });
});
