// `keypool migrate`: applies pending SQL migrations (sql/migrations) and the provider seed. Idempotent.
import type { CommandSpec } from './args.js';
import type { Command } from './command.js';
import { printJson } from './output.js';
import { runMigrations } from './store.js';

const migrateSpec: CommandSpec = {
  name: 'migrate',
  summary: 'Create or upgrade the database schema (safe to run repeatedly).',
  details: [
    'Targets DATABASE_URL (postgres://...) when set, else the embedded store in KEYPOOL_DATA_DIR (default ./.keypool).',
    'While `keypool serve` runs on the embedded store, this connects to it through the server.',
  ].join('\n'),
};

export const migrateCommand: Command = {
  spec: migrateSpec,
  async run(context, { json }) {
    const applied = await runMigrations(context);
    if (json) printJson(context.output, { applied });
    else if (applied.length === 0) context.output.out('Schema is up to date.\n');
    else context.output.out(`Applied ${applied.length} migration(s):\n${applied.map((m) => `  ${m}\n`).join('')}`);
    return 0;
  },
};
