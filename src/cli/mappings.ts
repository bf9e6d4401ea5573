// `keypool mappings add|list|remove`: priority mappings (which keys get which priority and tenant).
import { MATCH_TYPES } from '../core/types.js';
import { UsageError, definedOnly, stringOption, type CommandSpec, type OptionValues } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printRecord, printTable, type Column } from './output.js';
import { presentMapping } from '../admin/present.js';
import type { MappingRow } from '../catalog/mappings/rows.js';
import { validateNewMapping } from '../catalog/mappings/schema.js';
import { unwrap, validateId } from '../catalog/validated.js';

const addSpec: CommandSpec = {
  name: 'mappings add',
  summary: 'Add a priority mapping: keys matching the pattern get this priority and tenant.',
  options: {
    pattern: { type: 'string', valueName: 'PATTERN', description: 'text matched against the presented key, required' },
    match: { type: 'string', valueName: 'TYPE', description: `${MATCH_TYPES.join(' | ')}, required` },
    priority: { type: 'string', valueName: 'N', description: '0 (highest) to 9, required' },
    tenant: { type: 'string', valueName: 'ID', description: "tenant id sent upstream as x-keypool-tenant, for matching keys that have none of their own" },
    'tenant-id': { type: 'string', valueName: 'ID', description: 'deprecated spelling of --tenant' },
    'tenant-name': { type: 'string', valueName: 'NAME', description: 'tenant display name' },
    'tenant-type': { type: 'string', valueName: 'TYPE', description: 'internal | external' },
    description: { type: 'string', valueName: 'TEXT', description: 'free text' },
    disabled: { type: 'boolean', description: 'create it disabled' },
  },
  fieldFlags: { matchType: '--match', enabled: '--disabled', tenantId: '--tenant' },
  details: [
    'Precedence: exact > longest prefix > longest suffix > contains > regex (in created order).',
    'Mappings apply only when priority mapping is enabled: keypool config set priority.enabled true',
    'Example:',
    '  keypool keys create --name svc --prefix team-a        # issues kp_team-a_<random>',
    '  keypool mappings add --pattern kp_team-a_ --match prefix --priority 1 --tenant team-a --tenant-type internal',
  ].join('\n'),
};

/** `--tenant`, as on every command; `--tenant-id` (its first spelling) still works. */
function tenantFlag(values: OptionValues): string | undefined {
  const tenant = stringOption(values, 'tenant');
  const legacy = stringOption(values, 'tenant-id');
  if (tenant !== undefined && legacy !== undefined && tenant !== legacy) throw new UsageError('give --tenant only (--tenant-id is its old spelling)');
  return tenant ?? legacy;
}

const add: Command = {
  spec: addSpec,
  async run(context, { values, json }) {
    const mapping = unwrap(
      validateNewMapping(
        definedOnly({
          pattern: stringOption(values, 'pattern'),
          matchType: stringOption(values, 'match'),
          priority: stringOption(values, 'priority'),
          tenantId: tenantFlag(values),
          tenantName: stringOption(values, 'tenant-name'),
          tenantType: stringOption(values, 'tenant-type'),
          description: stringOption(values, 'description'),
          enabled: values.disabled === true ? false : undefined,
        }),
      ),
    );
    const { repo } = await context.store();
    const row = await repo.mappings.create(mapping, context.actor);
    if (json) printJson(context.output, { mapping: presentMapping(row) });
    else {
      context.output.out(`Added mapping ${row.id}\n`);
      printRecord(context.output, [
        ['pattern', row.pattern],
        ['match', row.matchType],
        ['priority', row.priority],
        ['tenant', row.tenantId],
        ['enabled', row.enabled],
      ]);
    }
    return 0;
  },
};

const listSpec: CommandSpec = {
  name: 'mappings list',
  summary: 'List priority mappings.',
};

const list: Command = {
  spec: listSpec,
  async run(context, { json }) {
    const { repo } = await context.store();
    const rows = await repo.mappings.list();
    if (json) printJson(context.output, { items: rows.map(presentMapping) });
    else printTable(context.output, MAPPING_COLUMNS, rows, '(no mappings)');
    return 0;
  },
};

const removeSpec: CommandSpec = {
  name: 'mappings remove',
  summary: 'Remove a priority mapping (soft delete).',
  positionals: [{ name: 'id', description: 'mapping id (UUID)' }],
};

const remove: Command = {
  spec: removeSpec,
  async run(context, { positionals, json }) {
    const id = unwrap(validateId(positionals[0]));
    const { repo } = await context.store();
    await repo.mappings.softDelete(id, context.actor);
    if (json) printJson(context.output, { removed: id });
    else context.output.out(`Removed mapping ${id}\n`);
    return 0;
  },
};

export const mappingsGroup: CommandGroup = {
  name: 'mappings',
  summary: 'Manage priority mappings (key pattern -> priority and tenant).',
  commands: [add, list, remove],
};

const MAPPING_COLUMNS: readonly Column<MappingRow>[] = [
  { header: 'id', value: (m) => m.id },
  { header: 'match', value: (m) => m.matchType },
  { header: 'pattern', value: (m) => m.pattern },
  { header: 'priority', value: (m) => m.priority },
  { header: 'tenant', value: (m) => m.tenantId },
  { header: 'tenant name', value: (m) => m.tenantName },
  { header: 'type', value: (m) => m.tenantType },
  { header: 'enabled', value: (m) => m.enabled },
  { header: 'description', value: (m) => m.description },
];
