// `keypool tenants create|list|show|update|delete|usage`: tenants (the ids keys and mappings carry) and their quotas.
import { definedOnly, stringOption, type CommandSpec, type OptionValues } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printRecord, printTable, type Column } from './output.js';
import { presentTenant } from '../admin/present.js';
import type { TenantRow } from '../catalog/tenants/rows.js';
import { validateNewTenant, validateTenantPatch } from '../catalog/tenants/schema.js';
import { checkTenantId, unwrap, ValidationFailure } from '../catalog/validated.js';

const LIMIT_OPTIONS = {
  name: { type: 'string', valueName: 'NAME', description: 'display name (default: the id)' },
  rpm: { type: 'string', valueName: 'N', description: 'requests per minute (sliding 60 s) of all the tenant\'s keys together' },
  rpd: { type: 'string', valueName: 'N', description: 'requests per day (KEYPOOL_QUOTA_TZ) of all the tenant\'s keys together' },
  tpm: { type: 'string', valueName: 'N', description: 'tokens per minute (sliding 60 s; estimates reserved, then reconciled) of all the keys together' },
  tpd: { type: 'string', valueName: 'N', description: 'tokens per day (KEYPOOL_QUOTA_TZ) of all the tenant\'s keys together' },
} as const;
const FIELD_FLAGS = { id: '<id>', rpmLimit: '--rpm', rpdLimit: '--rpd', tpmLimit: '--tpm', tpdLimit: '--tpd' };

function tenantIdArg(value: string | undefined): string {
  const checked = checkTenantId(value);
  if (!checked.ok) throw new ValidationFailure([{ field: 'id', code: checked.code, message: `id: ${checked.message}` }]);
  return checked.value;
}

/** `none` removes a limit. */
function limitFlags(values: OptionValues): Record<string, unknown> {
  const orNull = (v: string | undefined): string | null | undefined => (v === 'none' ? null : v);
  return definedOnly({
    name: stringOption(values, 'name'),
    rpmLimit: orNull(stringOption(values, 'rpm')),
    rpdLimit: orNull(stringOption(values, 'rpd')),
    tpmLimit: orNull(stringOption(values, 'tpm')),
    tpdLimit: orNull(stringOption(values, 'tpd')),
  });
}

const createSpec: CommandSpec = {
  name: 'tenants create',
  summary: 'Add a tenant: give a tenant id (as keys and mappings carry it) a name and request quotas.',
  positionals: [{ name: 'id', description: 'tenant id ([A-Za-z0-9._-], up to 64)' }],
  options: LIMIT_OPTIONS,
  fieldFlags: FIELD_FLAGS,
  details: [
    'Example:',
    '  keypool tenants create acme --name "ACME Corp" --rpm 600 --rpd 100000 --tpm 200000 --tpd 50000000',
    '  keypool keys create --name acme-ci --tenant acme --rpm 30     # a key of the tenant, with its own quota too',
  ].join('\n'),
};

const create: Command = {
  spec: createSpec,
  async run(context, { values, positionals, json }) {
    const tenant = unwrap(validateNewTenant({ id: positionals[0], ...limitFlags(values) }));
    const { repo } = await context.store();
    const row = await repo.tenants.create(tenant, context.actor);
    if (json) printJson(context.output, { tenant: presentTenant(row) });
    else {
      context.output.out(`Created tenant ${row.id}\n`);
      printRecord(context.output, tenantRecord(row));
    }
    return 0;
  },
};

const list: Command = {
  spec: { name: 'tenants list', summary: 'List tenants and their quotas.' },
  async run(context, { json }) {
    const { repo } = await context.store();
    const rows = await repo.tenants.list();
    if (json) printJson(context.output, { items: rows.map(presentTenant) });
    else printTable(context.output, TENANT_COLUMNS, rows, '(no tenants)');
    return 0;
  },
};

const show: Command = {
  spec: { name: 'tenants show', summary: 'Show one tenant.', positionals: [{ name: 'id', description: 'tenant id' }] },
  async run(context, { positionals, json }) {
    const { repo } = await context.store();
    const row = await repo.tenants.get(tenantIdArg(positionals[0]));
    if (json) printJson(context.output, { tenant: presentTenant(row) });
    else printRecord(context.output, tenantRecord(row));
    return 0;
  },
};

const update: Command = {
  spec: {
    name: 'tenants update',
    summary: "Change a tenant's name or quotas (`none` removes a quota).",
    positionals: [{ name: 'id', description: 'tenant id' }],
    options: LIMIT_OPTIONS,
    fieldFlags: FIELD_FLAGS,
    details: 'Example:\n  keypool tenants update acme --rpd none --rpm 1200',
  },
  async run(context, { values, positionals, json }) {
    const id = tenantIdArg(positionals[0]);
    const patch = unwrap(validateTenantPatch(limitFlags(values)));
    const { repo } = await context.store();
    const row = await repo.tenants.update(id, patch, context.actor);
    if (json) printJson(context.output, { tenant: presentTenant(row) });
    else {
      context.output.out(`Updated tenant ${row.id}\n`);
      printRecord(context.output, tenantRecord(row));
    }
    return 0;
  },
};

const remove: Command = {
  spec: {
    name: 'tenants delete',
    summary: "Delete a tenant row (its quotas); keys and mappings keep the tenant id.",
    positionals: [{ name: 'id', description: 'tenant id' }],
  },
  async run(context, { positionals, json }) {
    const id = tenantIdArg(positionals[0]);
    const { repo } = await context.store();
    await repo.tenants.delete(id, context.actor);
    if (json) printJson(context.output, { deleted: id });
    else context.output.out(`Deleted tenant ${id}\n`);
    return 0;
  },
};

export const tenantsGroup: CommandGroup = {
  name: 'tenants',
  summary: 'Manage tenants and their request quotas (live usage: GET /admin/tenants/:id/usage).',
  commands: [create, list, show, update, remove],
};

const TENANT_COLUMNS: readonly Column<TenantRow>[] = [
  { header: 'id', value: (t) => t.id },
  { header: 'name', value: (t) => t.name },
  { header: 'rpm', value: (t) => t.rpmLimit ?? 'unlimited' },
  { header: 'rpd', value: (t) => t.rpdLimit ?? 'unlimited' },
  { header: 'tpm', value: (t) => t.tpmLimit ?? 'unlimited' },
  { header: 'tpd', value: (t) => t.tpdLimit ?? 'unlimited' },
];

function tenantRecord(row: TenantRow): [string, unknown][] {
  return [
    ['id', row.id],
    ['name', row.name],
    ['requests per minute', row.rpmLimit ?? 'unlimited'],
    ['requests per day', row.rpdLimit ?? 'unlimited'],
    ['tokens per minute', row.tpmLimit ?? 'unlimited'],
    ['tokens per day', row.tpdLimit ?? 'unlimited'],
  ];
}
