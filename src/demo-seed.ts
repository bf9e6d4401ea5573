// First start of the embedded default: demo accounts (obviously fake upstream keys) plus the demo mappings of
// examples/seed-demo.sql, so `npm start` shows a working pool at once. Runs only when the store has no account at
// all, so it never touches real data.
import { applyDemoSeed } from './stores/migrate.js';
import type { SqlClient } from './stores/sql-client.js';
import type { ConfigRepository } from './catalog/repository.js';

const DEMO_ACTOR = 'demo-seed';

const DEMO_ACCOUNTS = [
  { providerSlug: 'openai', name: 'demo-openai-1', apiKey: 'sk-demo-not-a-real-key-0001', rpmLimit: 60, maxConcurrency: 5 },
  { providerSlug: 'openai', name: 'demo-openai-2', apiKey: 'sk-demo-not-a-real-key-0002', rpmLimit: 60, maxConcurrency: 5 },
  { providerSlug: 'anthropic', name: 'demo-anthropic-1', apiKey: 'sk-ant-demo-not-a-real-key-0001', rpmLimit: 50 },
] as const;

export interface DemoSeedResult {
  readonly accounts: number;
}

export async function seedDemoOnFirstStart(repository: ConfigRepository, client: SqlClient): Promise<DemoSeedResult | null> {
  const existing = await repository.accounts.list();
  if (existing.length > 0) return null;
  for (const account of DEMO_ACCOUNTS) await repository.accounts.create(account, DEMO_ACTOR);
  await applyDemoSeed(client);
  return { accounts: DEMO_ACCOUNTS.length };
}
