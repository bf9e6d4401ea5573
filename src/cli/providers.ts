// `keypool providers list|set`: the provider pools, their default selection strategy and per-model state switch (the
// provider settings an operator changes; auth style and rate-limit dialect are what the provider is).
import { definedOnly, stringOption, type CommandSpec } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printTable, type Column } from './output.js';
import { presentProvider } from '../admin/present.js';
import type { ProviderRow } from '../catalog/providers/rows.js';
import { validateProviderPatch, validateProviderSlug } from '../catalog/providers/schema.js';
import { unwrap } from '../catalog/validated.js';
import { STRATEGIES } from '../core/types.js';

const list: Command = {
  spec: { name: 'providers list', summary: 'List providers with their auth style, rate-limit dialect and default strategy.' },
  async run(context, { json }) {
    const { repo } = await context.store();
    const rows = await repo.providers.list();
    if (json) printJson(context.output, { items: rows.map(presentProvider) });
    else printTable(context.output, PROVIDER_COLUMNS, rows, '(no providers: run keypool migrate)');
    return 0;
  },
};

const setSpec: CommandSpec = {
  name: 'providers set',
  summary: "Change a provider's default selection strategy or its per-model state switch.",
  positionals: [{ name: 'slug', description: 'provider slug (openai, anthropic, ...)' }],
  options: {
    strategy: { type: 'string', valueName: 'STRATEGY', description: `one of ${STRATEGIES.join(', ')}` },
    'per-model-state': {
      type: 'string',
      valueName: 'on|off',
      description: 'keep cooldowns and reported limits per model for every request (reads each request body for its model)',
    },
  },
  fieldFlags: { perModelState: '--per-model-state' },
  details: 'At least one of --strategy and --per-model-state.',
};

const set: Command = {
  spec: setSpec,
  async run(context, { values, positionals, json }) {
    const slug = unwrap(validateProviderSlug(positionals[0], 'slug'));
    const patch = unwrap(
      validateProviderPatch(definedOnly({ strategy: stringOption(values, 'strategy'), perModelState: stringOption(values, 'per-model-state') })),
    );
    const { repo } = await context.store();
    const row = await repo.providers.update(slug, patch, context.actor);
    if (json) printJson(context.output, { provider: presentProvider(row) });
    else context.output.out(`Provider ${row.slug}: strategy ${row.defaultStrategy}, per-model state ${row.perModelState ? 'on' : 'off'}\n`);
    return 0;
  },
};

export const providersGroup: CommandGroup = {
  name: 'providers',
  summary: 'Show provider pools and set their default strategy and per-model state.',
  commands: [list, set],
};

const PROVIDER_COLUMNS: readonly Column<ProviderRow>[] = [
  { header: 'slug', value: (p) => p.slug },
  { header: 'name', value: (p) => p.displayName },
  { header: 'auth', value: (p) => p.authStyle },
  { header: 'rate limits', value: (p) => p.rateLimitDialect },
  { header: 'strategy', value: (p) => p.defaultStrategy },
  { header: 'per-model state', value: (p) => (p.perModelState ? 'on' : 'off') },
];
