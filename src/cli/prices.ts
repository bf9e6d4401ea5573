// `keypool prices set|list|delete`: token prices (USD per million tokens per provider and model pattern), what the
// `cost_usd` of token usage is computed from (README "Tokens and usage accounting").
import { definedOnly, stringOption, type CommandSpec } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printTable, type Column } from './output.js';
import { presentPrice } from '../admin/present.js';
import type { PriceRow } from '../catalog/prices/rows.js';
import { checkModelPattern, validatePrice } from '../catalog/prices/schema.js';
import { checkProviderSlug, unwrap, ValidationFailure, type Check } from '../catalog/validated.js';

const positionals = [
  { name: 'provider', description: 'provider slug' },
  { name: 'model', description: 'model name as the provider reports it, a prefix ending in * (the longest wins), or * for every model' },
];

function arg<T>(field: string, check: Check<T>): T {
  if (!check.ok) throw new ValidationFailure([{ field, code: check.code, message: `${field}: ${check.message}` }]);
  return check.value;
}

const setSpec: CommandSpec = {
  name: 'prices set',
  summary: 'Set the price of a provider and model pattern (USD per million tokens).',
  positionals,
  options: {
    input: { type: 'string', valueName: 'USD', description: 'per million input tokens (required)' },
    output: { type: 'string', valueName: 'USD', description: 'per million output tokens (required)' },
    'cached-input': { type: 'string', valueName: 'USD', description: 'per million cached input tokens (default: the input price)' },
    'cache-creation': { type: 'string', valueName: 'USD', description: 'per million cache-write input tokens (default: the input price)' },
  },
  fieldFlags: { provider: '<provider>', model: '<model>', input: '--input', output: '--output', cachedInput: '--cached-input', cacheCreation: '--cache-creation' },
  details: ['Examples:', '  keypool prices set openai "gpt-4o*" --input 2.5 --output 10 --cached-input 1.25', "  keypool prices set anthropic '*' --input 3 --output 15"].join('\n'),
};

const set: Command = {
  spec: setSpec,
  async run(context, { values, positionals: [provider, model], json }) {
    const price = unwrap(
      validatePrice(
        definedOnly({
          provider,
          model,
          input: stringOption(values, 'input'),
          output: stringOption(values, 'output'),
          cachedInput: stringOption(values, 'cached-input'),
          cacheCreation: stringOption(values, 'cache-creation'),
        }),
      ),
    );
    const { repo } = await context.store();
    const row = await repo.prices.set(price, context.actor);
    if (json) printJson(context.output, { price: presentPrice(row) });
    else context.output.out(`Set the price of ${row.providerSlug} ${row.model}\n`);
    return 0;
  },
};

const list: Command = {
  spec: { name: 'prices list', summary: 'List token prices (USD per million tokens).' },
  async run(context, { json }) {
    const { repo } = await context.store();
    const rows = await repo.prices.list();
    if (json) printJson(context.output, { items: rows.map(presentPrice) });
    else printTable(context.output, PRICE_COLUMNS, rows, '(no prices: token usage costs 0)');
    return 0;
  },
};

const remove: Command = {
  spec: { name: 'prices delete', summary: 'Remove the price of a provider and model pattern.', positionals },
  async run(context, { positionals: [provider, model], json }) {
    const slug = arg('provider', checkProviderSlug(provider));
    const pattern = arg('model', checkModelPattern(model));
    const { repo } = await context.store();
    await repo.prices.delete(slug, pattern, context.actor);
    if (json) printJson(context.output, { deleted: { provider: slug, model: pattern } });
    else context.output.out(`Deleted the price of ${slug} ${pattern}\n`);
    return 0;
  },
};

export const pricesGroup: CommandGroup = {
  name: 'prices',
  summary: 'Manage token prices (cost_usd of token usage; GET /admin/tenants/:id/usage).',
  commands: [set, list, remove],
};

const PRICE_COLUMNS: readonly Column<PriceRow>[] = [
  { header: 'provider', value: (p) => p.providerSlug },
  { header: 'model', value: (p) => p.model },
  { header: 'input', value: (p) => p.inputUsdPerMTok },
  { header: 'output', value: (p) => p.outputUsdPerMTok },
  { header: 'cached input', value: (p) => p.cachedInputUsdPerMTok ?? 'as input' },
  { header: 'cache creation', value: (p) => p.cacheCreationUsdPerMTok ?? 'as input' },
];
