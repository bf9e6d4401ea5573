// `keypool accounts add|list|disable|enable`: upstream provider credentials. The secret comes from stdin or an
// environment variable (never argv), is encrypted by the repository, and is never printed: only its last 4 characters.
import { definedOnly, listOption, stringOption, UsageError, type CommandSpec } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printRecord, printTable, type Column } from './output.js';
import { presentAccount } from '../admin/present.js';
import { readUpstreamSecret, SECRET_IN_ARGV_REASON } from './secret-input.js';
import type { AccountRow } from '../catalog/accounts/rows.js';
import { validateAccountPatch, validateNewAccount, validateReason } from '../catalog/accounts/schema.js';
import { validateProviderSlug } from '../catalog/providers/schema.js';
import { ValidationFailure, unwrap, validateId } from '../catalog/validated.js';

const addSpec: CommandSpec = {
  name: 'accounts add',
  summary: "Add an upstream account to a provider's pool; the API key is read from stdin or --key-env.",
  options: {
    provider: { type: 'string', valueName: 'SLUG', description: 'provider slug (openai, anthropic, azure-openai, gemini, ...), required' },
    name: { type: 'string', valueName: 'NAME', description: 'account name, unique within the provider, required' },
    'key-env': { type: 'string', valueName: 'VAR', description: 'read the API key from this environment variable' },
    weight: { type: 'string', valueName: 'N', description: 'weighted-random share, 0-1000 (default 1)' },
    tier: { type: 'string', valueName: 'N', description: 'priority tier, 0 tried first, 0-100 (default 0)' },
    rpm: { type: 'string', valueName: 'N', description: 'requests per minute limit (default: learn from headers)' },
    tpm: { type: 'string', valueName: 'N', description: 'tokens per minute limit (default: learn from headers)' },
    'max-concurrency': { type: 'string', valueName: 'N', description: 'most requests in flight (default: unlimited)' },
    tag: { type: 'string', multiple: true, valueName: 'KEY=VALUE', description: 'free-form tag' },
    models: { type: 'string', valueName: 'LIST', description: "models it may serve: names or prefix globs, 'gpt-4o*,o1' (default: any)" },
    scope: { type: 'string', valueName: 'SCOPE', description: 'quota scope shared with sibling keys, e.g. openai-org-acme/project-x' },
  },
  refused: {
    '--key': SECRET_IN_ARGV_REASON,
    '--api-key': SECRET_IN_ARGV_REASON,
    '--secret': SECRET_IN_ARGV_REASON,
    '--token': SECRET_IN_ARGV_REASON,
  },
  hidePositionals: true,
  fieldFlags: {
    providerSlug: '--provider',
    rpmLimit: '--rpm',
    tpmLimit: '--tpm',
    tags: '--tag',
    apiKey: 'the API key (stdin or --key-env)',
  },
  details: [
    'The API key is never accepted as an argument (visible in ps and shell history). Either:',
    '  printenv OPENAI_KEY | keypool accounts add --provider openai --name main',
    '  keypool accounts add --provider openai --name main --key-env OPENAI_KEY',
    'or run it in a terminal and paste the key at the hidden prompt. One trailing newline is removed.',
  ].join('\n'),
};

const add: Command = {
  spec: addSpec,
  async run(context, { values, json }) {
    // Flags first, so a typo is reported before anyone is asked for a secret.
    const flags = definedOnly({
      providerSlug: stringOption(values, 'provider'),
      name: stringOption(values, 'name'),
      weight: stringOption(values, 'weight'),
      tier: stringOption(values, 'tier'),
      rpmLimit: stringOption(values, 'rpm'),
      tpmLimit: stringOption(values, 'tpm'),
      maxConcurrency: stringOption(values, 'max-concurrency'),
      tags: values.tag === undefined ? undefined : parseTags(listOption(values, 'tag')),
      models: stringOption(values, 'models'),
      scope: stringOption(values, 'scope'),
    });
    const precheck = validateNewAccount({ ...flags, apiKey: 'placeholder' });
    if (!precheck.ok) throw new ValidationFailure(precheck.errors);
    const keyEnv = stringOption(values, 'key-env');
    const fromEnv = keyEnv === undefined ? undefined : await readUpstreamSecret(context, keyEnv);
    const { repo } = await context.store();
    // Before a terminal prompt asks for the key: the provider must exist.
    await requireProvider(repo, precheck.value.providerSlug);
    const apiKey = fromEnv ?? (await readUpstreamSecret(context, undefined));
    const account = unwrap(validateNewAccount({ ...flags, apiKey }));
    const row = await repo.accounts.create(account, context.actor);
    if (json) printJson(context.output, { account: presentAccount(row) });
    else {
      context.output.out(`Added account ${row.id}\n`);
      printRecord(context.output, accountRecord(row));
    }
    return 0;
  },
};

const updateSpec: CommandSpec = {
  name: 'accounts update',
  summary: "Change an account's weight, tier, limits, tags, models or scope (its key: `accounts add` a new one, or keypool apply).",
  positionals: [{ name: 'account', description: 'account id, or its name when no other provider has one by that name' }],
  options: {
    weight: { type: 'string', valueName: 'N', description: 'weighted-random share, 1-1000' },
    tier: { type: 'string', valueName: 'N', description: 'priority tier, 0 tried first, 0-100' },
    rpm: { type: 'string', valueName: 'N|none', description: 'requests per minute limit (none: learn from headers)' },
    tpm: { type: 'string', valueName: 'N|none', description: 'tokens per minute limit (none: learn from headers)' },
    'max-concurrency': { type: 'string', valueName: 'N|none', description: 'most requests in flight (none: unlimited)' },
    tag: { type: 'string', multiple: true, valueName: 'KEY=VALUE', description: 'replaces all tags (repeat for several)' },
    models: { type: 'string', valueName: 'LIST|none', description: "models it may serve, 'gpt-4o*,o1' (none: any model)" },
    scope: { type: 'string', valueName: 'SCOPE|none', description: 'quota scope shared with sibling keys (none: its own)' },
  },
  fieldFlags: { rpmLimit: '--rpm', tpmLimit: '--tpm', tags: '--tag', body: 'flags' },
};

const update: Command = {
  spec: updateSpec,
  async run(context, { values, positionals, json }) {
    const ref = positionals[0];
    if (ref === undefined || ref.trim() === '') throw new UsageError('give the account id or name', 'keypool accounts update <account> [--weight N] ...');
    const orNull = (name: string) => {
      const value = stringOption(values, name);
      return value === 'none' ? null : value;
    };
    const patch = unwrap(
      validateAccountPatch(
        definedOnly({
          weight: stringOption(values, 'weight'),
          tier: stringOption(values, 'tier'),
          rpmLimit: orNull('rpm'),
          tpmLimit: orNull('tpm'),
          maxConcurrency: orNull('max-concurrency'),
          tags: values.tag === undefined ? undefined : parseTags(listOption(values, 'tag')),
          models: stringOption(values, 'models') === 'none' ? [] : stringOption(values, 'models'),
          scope: orNull('scope'),
        }),
      ),
    );
    const { repo } = await context.store();
    const row = await repo.accounts.update(ref.trim(), patch, context.actor);
    if (json) printJson(context.output, { account: presentAccount(row) });
    else {
      context.output.out(`Updated account ${row.id}\n`);
      printRecord(context.output, accountRecord(row));
    }
    return 0;
  },
};

const listSpec: CommandSpec = {
  name: 'accounts list',
  summary: 'List upstream accounts (keys are never shown, only their last 4 characters).',
  options: {
    provider: { type: 'string', valueName: 'SLUG', description: 'only this provider' },
  },
};

const list: Command = {
  spec: listSpec,
  async run(context, { values, json }) {
    const slugText = stringOption(values, 'provider');
    const providerSlug = slugText === undefined ? undefined : unwrap(validateProviderSlug(slugText, 'provider'));
    const { repo } = await context.store();
    if (providerSlug !== undefined) await requireProvider(repo, providerSlug);
    const rows = await repo.accounts.list(providerSlug === undefined ? {} : { providerSlug });
    if (json) printJson(context.output, { items: rows.map(presentAccount) });
    else printTable(context.output, ACCOUNT_COLUMNS, rows, '(no accounts)');
    return 0;
  },
};

const disableSpec: CommandSpec = {
  name: 'accounts disable',
  summary: 'Take an account out of its pool (it keeps its key; `enable` brings it back).',
  positionals: [{ name: 'id', description: 'account id (UUID)' }],
  options: {
    reason: { type: 'string', valueName: 'TEXT', description: 'why (shown in lists and the audit log)' },
  },
};

const disable: Command = {
  spec: disableSpec,
  async run(context, { values, positionals, json }) {
    const id = unwrap(validateId(positionals[0]));
    const reason = unwrap(validateReason(stringOption(values, 'reason')));
    const { repo } = await context.store();
    const row = await repo.accounts.setStatus(id, 'disabled', reason, context.actor);
    if (json) printJson(context.output, { account: presentAccount(row) });
    else context.output.out(`Disabled account ${row.id} (${row.providerSlug}/${row.name})\n`);
    return 0;
  },
};

const enableSpec: CommandSpec = {
  name: 'accounts enable',
  summary: 'Put a disabled or invalid account back into its pool.',
  positionals: [{ name: 'id', description: 'account id (UUID)' }],
};

const enable: Command = {
  spec: enableSpec,
  async run(context, { positionals, json }) {
    const id = unwrap(validateId(positionals[0]));
    const { repo } = await context.store();
    const row = await repo.accounts.setStatus(id, 'active', null, context.actor);
    if (json) printJson(context.output, { account: presentAccount(row) });
    else context.output.out(`Enabled account ${row.id} (${row.providerSlug}/${row.name})\n`);
    return 0;
  },
};

export const accountsGroup: CommandGroup = {
  name: 'accounts',
  summary: 'Manage upstream provider accounts (the pooled credentials keypool injects).',
  commands: [add, update, list, disable, enable],
};

/** A clear "unknown provider" with the known slugs, before any secret is read. */
async function requireProvider(
  repo: { providers: { list(): Promise<readonly { slug: string }[]> } },
  slug: string,
): Promise<void> {
  const providers = await repo.providers.list();
  if (providers.some((p) => p.slug === slug)) return;
  const known = providers.map((p) => p.slug).join(', ') || '(none: run keypool migrate)';
  throw new ValidationFailure([{ field: 'provider', code: 'invalid_choice', message: `unknown provider "${slug}"; known: ${known}` }]);
}

/** `--tag team=ml --tag cost=42` -> { team: 'ml', cost: '42' } (values stay strings). */
function parseTags(items: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const item of items) {
    const at = item.indexOf('=');
    if (at <= 0) throw new UsageError(`--tag expects KEY=VALUE, got ${JSON.stringify(item.slice(0, 64))}`);
    tags[item.slice(0, at)] = item.slice(at + 1);
  }
  return tags;
}

const ACCOUNT_COLUMNS: readonly Column<AccountRow>[] = [
  { header: 'id', value: (a) => a.id },
  { header: 'provider', value: (a) => a.providerSlug },
  { header: 'name', value: (a) => a.name },
  { header: 'status', value: (a) => a.status },
  { header: 'key', value: (a) => `...${a.keyLast4}` },
  { header: 'weight', value: (a) => a.weight },
  { header: 'tier', value: (a) => a.tier },
  { header: 'rpm', value: (a) => a.rpmLimit },
  { header: 'tpm', value: (a) => a.tpmLimit },
  { header: 'max conc', value: (a) => a.maxConcurrency },
  { header: 'reason', value: (a) => a.disabledReason },
];

function accountRecord(row: AccountRow): [string, unknown][] {
  return [
    ['provider', row.providerSlug],
    ['name', row.name],
    ['status', row.status],
    ['key', `...${row.keyLast4} (encrypted, version ${row.keyVersion})`],
    ['weight', row.weight],
    ['tier', row.tier],
    ['rpm limit', row.rpmLimit],
    ['tpm limit', row.tpmLimit],
    ['max concurrency', row.maxConcurrency],
    ['tags', row.tags],
    ['models', row.models.length === 0 ? 'any' : row.models.join(', ')],
    ['scope', row.scope],
  ];
}
