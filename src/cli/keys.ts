// `keypool keys create|import|list|update|rotate|revoke`: system (client) API keys. A new key is printed once and never again.
import { definedOnly, listOption, stringOption, type CommandSpec } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printRecord, printTable, type Column } from './output.js';
import { presentKey } from '../admin/present.js';
import type { SystemKeyRow } from '../catalog/keys/rows.js';
import { validateImportedKey, validateKeyPatch, validateNewKey, validateRotate } from '../catalog/keys/schema.js';
import { unwrap, validateId, ValidationFailure } from '../catalog/validated.js';
import { readUpstreamSecret, SECRET_IN_ARGV_REASON } from './secret-input.js';

const ONCE_NOTICE = 'Store this key now: it is shown only once and cannot be retrieved again.';

const createSpec: CommandSpec = {
  name: 'keys create',
  summary: 'Create a system API key for a client (the key is printed once).',
  options: {
    name: { type: 'string', valueName: 'NAME', description: 'display name (1-100 characters), required' },
    tenant: { type: 'string', valueName: 'TENANT', description: 'tenant id ([A-Za-z0-9._-], up to 64)' },
    'allowed-ips': {
      type: 'string',
      multiple: true,
      valueName: 'CIDRS',
      description: 'comma-separated CIDRs or addresses allowed to use the key (default: any)',
    },
    'expires-in': { type: 'string', valueName: 'DURATION', description: 'expire after 90d, 24h, 1h30m, ...' },
    'expires-at': { type: 'string', valueName: 'DATE', description: 'expire at an ISO 8601 instant (2026-12-31T00:00:00Z)' },
    'rotate-after-days': { type: 'string', valueName: 'DAYS', description: 'report the key as due for rotation after 1-3650 days' },
    prefix: { type: 'string', valueName: 'PREFIX', description: 'issue kp_<PREFIX>_<random> (letters, digits, inner dashes), for mappings to match' },
    rpm: { type: 'string', valueName: 'N', description: 'request quota: at most N requests per minute (sliding 60 s), all providers' },
    rpd: { type: 'string', valueName: 'N', description: 'request quota: at most N requests per day (KEYPOOL_QUOTA_TZ)' },
    tpm: { type: 'string', valueName: 'N', description: 'token quota: at most N tokens per minute (sliding 60 s; estimates reserved, then reconciled)' },
    tpd: { type: 'string', valueName: 'N', description: 'token quota: at most N tokens per day (KEYPOOL_QUOTA_TZ)' },
  },
  fieldFlags: { tenantId: '--tenant', rpmLimit: '--rpm', rpdLimit: '--rpd', tpmLimit: '--tpm', tpdLimit: '--tpd' },
  details: [
    'Example:',
    '  keypool keys create --name ci-bot --prefix ci --tenant acme --allowed-ips 10.0.0.0/8,2001:db8::/32 \\',
    '    --expires-in 90d --rotate-after-days 30',
    'With --prefix ci the key reads kp_ci_<random>: a mapping `--pattern kp_ci_ --match prefix` matches every such key.',
  ].join('\n'),
};

const create: Command = {
  spec: createSpec,
  async run(context, { values, json }) {
    const input = definedOnly({ ...keyFlags(values), prefix: stringOption(values, 'prefix') });
    const key = unwrap(validateNewKey(input, context.nowMs()));
    const { repo } = await context.store();
    const { row, plaintextKey } = await repo.keys.create(key, context.actor);
    if (json) {
      printJson(context.output, { key: presentKey(row, context.nowMs()), api_key: plaintextKey, notice: ONCE_NOTICE });
      return 0;
    }
    context.output.out(`Created key ${row.id}\n`);
    printRecord(context.output, keyRecord(row));
    context.output.out(`\n  ${plaintextKey}\n\n${ONCE_NOTICE}\n`);
    return 0;
  },
};

const { prefix: _prefix, ...importOptions } = createSpec.options!;

const importSpec: CommandSpec = {
  name: 'keys import',
  summary: 'Bring in a key clients already use (read from stdin or --key-env); only its digest is stored.',
  options: {
    ...importOptions,
    'key-env': { type: 'string', valueName: 'VAR', description: 'read the key from this environment variable' },
  },
  refused: { '--key': SECRET_IN_ARGV_REASON, '--api-key': SECRET_IN_ARGV_REASON, '--secret': SECRET_IN_ARGV_REASON },
  hidePositionals: true,
  fieldFlags: { tenantId: '--tenant', rpmLimit: '--rpm', rpdLimit: '--rpd', tpmLimit: '--tpm', tpdLimit: '--tpd', key: 'the key (stdin or --key-env)' },
  details: [
    'Any key of 16-512 bytes without whitespace or control characters (sk-..., team-a-...) is accepted and then',
    'works exactly like an issued one. It is never accepted as an argument (visible in ps and shell history):',
    '  printenv LEGACY_KEY | keypool keys import --name legacy --tenant team-a',
    '  keypool keys import --name legacy --key-env LEGACY_KEY',
  ].join('\n'),
};

const importKey: Command = {
  spec: importSpec,
  async run(context, { values, json }) {
    const input = definedOnly(keyFlags(values));
    // Flags first, so a typo is reported before anyone is asked for a secret.
    const key = unwrap(validateNewKey(input, context.nowMs()));
    const secret = validateImportedKey(await readUpstreamSecret(context, stringOption(values, 'key-env'), 'Existing client key'), 'key');
    if (!secret.ok) throw new ValidationFailure(secret.errors);
    const { repo } = await context.store();
    const row = await repo.keys.import(key, secret.value, context.actor);
    if (json) printJson(context.output, { key: presentKey(row, context.nowMs()) });
    else {
      context.output.out(`Imported key ${row.id}\n`);
      printRecord(context.output, keyRecord(row));
    }
    return 0;
  },
};

const listSpec: CommandSpec = {
  name: 'keys list',
  summary: 'List system API keys (never the keys themselves, only their display prefix).',
  options: {
    due: { type: 'boolean', description: 'only keys past their rotate-after-days' },
  },
};

const list: Command = {
  spec: listSpec,
  async run(context, { values, json }) {
    const { repo } = await context.store();
    const rows = await repo.keys.list({ dueForRotation: values.due === true });
    if (json) printJson(context.output, { items: rows.map((row) => presentKey(row, context.nowMs())) });
    else printTable(context.output, KEY_COLUMNS, rows, values.due === true ? '(no key is due for rotation)' : '(no keys)');
    return 0;
  },
};

const updateSpec: CommandSpec = {
  name: 'keys update',
  summary: "Change a key's name, tenant or request quotas (`none` removes a tenant or a quota).",
  positionals: [{ name: 'id', description: 'key id (UUID) or name' }],
  options: {
    name: { type: 'string', valueName: 'NAME', description: 'new display name' },
    tenant: { type: 'string', valueName: 'TENANT', description: 'tenant id, or none' },
    rpm: { type: 'string', valueName: 'N', description: 'requests per minute, or none' },
    rpd: { type: 'string', valueName: 'N', description: 'requests per day (KEYPOOL_QUOTA_TZ), or none' },
    tpm: { type: 'string', valueName: 'N', description: 'tokens per minute, or none' },
    tpd: { type: 'string', valueName: 'N', description: 'tokens per day (KEYPOOL_QUOTA_TZ), or none' },
  },
  fieldFlags: { tenantId: '--tenant', rpmLimit: '--rpm', rpdLimit: '--rpd', tpmLimit: '--tpm', tpdLimit: '--tpd' },
  details: 'Example:\n  keypool keys update ci-bot --rpm 30 --rpd 1000 --tpm 50000\n  keypool keys update ci-bot --rpd none',
};

/** `none` clears a nullable field. */
function orNull(value: string | undefined): string | null | undefined {
  return value === 'none' ? null : value;
}

const update: Command = {
  spec: updateSpec,
  async run(context, { values, positionals, json }) {
    const ref = positionals[0] ?? '';
    const patch = unwrap(
      validateKeyPatch(
        definedOnly({
          name: stringOption(values, 'name'),
          tenantId: orNull(stringOption(values, 'tenant')),
          rpmLimit: orNull(stringOption(values, 'rpm')),
          rpdLimit: orNull(stringOption(values, 'rpd')),
          tpmLimit: orNull(stringOption(values, 'tpm')),
          tpdLimit: orNull(stringOption(values, 'tpd')),
        }),
        context.nowMs(),
      ),
    );
    const { repo } = await context.store();
    const row = await repo.keys.update(ref, patch, context.actor);
    if (json) printJson(context.output, { key: presentKey(row, context.nowMs()) });
    else {
      context.output.out(`Updated key ${row.id}\n`);
      printRecord(context.output, keyRecord(row));
    }
    return 0;
  },
};

const rotateSpec: CommandSpec = {
  name: 'keys rotate',
  summary: 'Issue a new key for an existing key id; the old one keeps working for the grace window.',
  positionals: [{ name: 'id', description: 'key id (UUID)' }],
  options: {
    grace: { type: 'string', valueName: 'DURATION', description: 'how long the old key keeps working, 0s-30d (default 24h)' },
  },
};

const rotate: Command = {
  spec: rotateSpec,
  async run(context, { values, positionals, json }) {
    const id = unwrap(validateId(positionals[0]));
    const { graceMs } = unwrap(validateRotate(definedOnly({ grace: stringOption(values, 'grace') })));
    const { repo } = await context.store();
    const { row, plaintextKey } = await repo.keys.rotate(id, graceMs, context.actor);
    if (json) {
      printJson(context.output, { key: presentKey(row, context.nowMs()), api_key: plaintextKey, notice: ONCE_NOTICE });
      return 0;
    }
    context.output.out(`Rotated key ${row.id}\n`);
    printRecord(context.output, [...keyRecord(row), ['old key works until', row.previousKeyExpiresAt ?? 'now']]);
    context.output.out(`\n  ${plaintextKey}\n\n${ONCE_NOTICE}\n`);
    return 0;
  },
};

const revokeSpec: CommandSpec = {
  name: 'keys revoke',
  summary: 'Revoke a key at once (its previous key too, if still in a grace window).',
  positionals: [{ name: 'id', description: 'key id (UUID)' }],
};

const revoke: Command = {
  spec: revokeSpec,
  async run(context, { positionals, json }) {
    const id = unwrap(validateId(positionals[0]));
    const { repo } = await context.store();
    const row = await repo.keys.revoke(id, context.actor);
    if (json) printJson(context.output, { key: presentKey(row, context.nowMs()) });
    else context.output.out(`Revoked key ${row.id} (${row.name})\n`);
    return 0;
  },
};

export const keysGroup: CommandGroup = {
  name: 'keys',
  summary: 'Manage system API keys (the keys clients present to the gateway).',
  commands: [create, importKey, list, update, rotate, revoke],
};

const KEY_COLUMNS: readonly Column<SystemKeyRow>[] = [
  { header: 'id', value: (k) => k.id },
  { header: 'name', value: (k) => k.name },
  { header: 'tenant', value: (k) => k.tenantId },
  { header: 'prefix', value: (k) => k.keyPrefix },
  { header: 'status', value: (k) => k.status },
  { header: 'expires', value: (k) => k.expiresAt },
  { header: 'allowed ips', value: (k) => k.allowedIps },
  { header: 'rotate days', value: (k) => k.rotateAfterDays },
  { header: 'last rotated', value: (k) => k.lastRotatedAt },
  { header: 'last used', value: (k) => k.lastUsedAt },
];

function keyRecord(row: SystemKeyRow): [string, unknown][] {
  return [
    ['name', row.name],
    ['tenant', row.tenantId],
    ['prefix', row.keyPrefix],
    ['status', row.status],
    ['expires', row.expiresAt],
    ['allowed ips', row.allowedIps.length === 0 ? 'any' : row.allowedIps],
    ['rotate after days', row.rotateAfterDays],
    ['requests per minute', row.rpmLimit ?? 'unlimited'],
    ['requests per day', row.rpdLimit ?? 'unlimited'],
    ['tokens per minute', row.tpmLimit ?? 'unlimited'],
    ['tokens per day', row.tpdLimit ?? 'unlimited'],
  ];
}

/** The flags `keys create` and `keys import` share, as the catalog's NewKey input (validated by validateNewKey). */
function keyFlags(values: Parameters<typeof stringOption>[0]): Record<string, string | undefined> {
  return {
    name: stringOption(values, 'name'),
    tenantId: stringOption(values, 'tenant'),
    allowedIps: values['allowed-ips'] === undefined ? undefined : listOption(values, 'allowed-ips').join(','),
    expiresIn: stringOption(values, 'expires-in'),
    expiresAt: stringOption(values, 'expires-at'),
    rotateAfterDays: stringOption(values, 'rotate-after-days'),
    rpmLimit: stringOption(values, 'rpm'),
    rpdLimit: stringOption(values, 'rpd'),
    tpmLimit: stringOption(values, 'tpm'),
    tpdLimit: stringOption(values, 'tpd'),
  };
}
