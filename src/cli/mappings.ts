// `keypool mappings add|update|list|remove`: priority mappings (which keys get which priority and tenant, and when).
import { MATCH_TYPES } from '../core/types.js';
import { UsageError, definedOnly, stringOption, type CommandSpec, type OptionValues } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printRecord, printTable, type Column } from './output.js';
import { presentMapping } from '../admin/present.js';
import type { MappingRow } from '../catalog/mappings/rows.js';
import { validateMappingPatch, validateNewMapping } from '../catalog/mappings/schema.js';
import { WINDOW_SYNTAX, windowText } from '../catalog/mappings/window.js';
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
    window: { type: 'string', valueName: 'WINDOW', description: `apply only while this window is open: ${WINDOW_SYNTAX}` },
  },
  fieldFlags: { matchType: '--match', enabled: '--disabled', tenantId: '--tenant', ...windowFlags() },
  details: [
    'Precedence: exact > longest prefix > longest suffix > contains > regex (in created order).',
    'A rule with --window applies only while the window is open (days name the day it starts; 22:00-06:00 crosses',
    'midnight); outside it the next matching rule applies. The same pattern may carry several windows and one rule',
    'without a window as the fallback.',
    'Mappings apply only when priority mapping is enabled: keypool config set priority.enabled true',
    'Example:',
    '  keypool keys create --name svc --prefix team-a        # issues kp_team-a_<random>',
    '  keypool mappings add --pattern kp_team-a_ --match prefix --priority 1 --tenant team-a --tenant-type internal',
    "  keypool mappings add --pattern kp_batch- --match prefix --priority 7 --window 'mon-fri 08:00-20:00 Europe/Berlin'",
    '  keypool mappings add --pattern kp_batch- --match prefix --priority 3      # the rest of the week',
  ].join('\n'),
};

/** Validation fields of a window's parts, in flag terms (`--window timezone: ...`). */
function windowFlags(): Record<string, string> {
  return { 'window.days': '--window days', 'window.start': '--window start', 'window.end': '--window end', 'window.timezone': '--window timezone' };
}

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
          window: stringOption(values, 'window'),
        }),
      ),
    );
    const { repo } = await context.store();
    const row = await repo.mappings.create(mapping, context.actor);
    if (json) printJson(context.output, { mapping: presentMapping(row) });
    else {
      context.output.out(`Added mapping ${row.id}\n`);
      printRecord(context.output, mappingRecord(row));
    }
    return 0;
  },
};

const updateSpec: CommandSpec = {
  name: 'mappings update',
  summary: "Change a priority mapping's pattern, priority, tenant, window or state (fields not given stay as they are).",
  positionals: [{ name: 'id', description: 'mapping id (UUID)' }],
  options: {
    pattern: { type: 'string', valueName: 'PATTERN', description: 'text matched against the presented key' },
    match: { type: 'string', valueName: 'TYPE', description: MATCH_TYPES.join(' | ') },
    priority: { type: 'string', valueName: 'N', description: '0 (highest) to 9' },
    tenant: { type: 'string', valueName: 'ID|none', description: 'tenant id (none: clear)' },
    'tenant-name': { type: 'string', valueName: 'NAME|none', description: 'tenant display name (none: clear)' },
    'tenant-type': { type: 'string', valueName: 'TYPE|none', description: 'internal | external (none: clear)' },
    description: { type: 'string', valueName: 'TEXT|none', description: 'free text (none: clear)' },
    enable: { type: 'boolean', description: 'enable the mapping' },
    disable: { type: 'boolean', description: 'disable the mapping (kept, ignored by the matcher)' },
    window: { type: 'string', valueName: 'WINDOW|none', description: `${WINDOW_SYNTAX}; none: always applies` },
  },
  fieldFlags: { matchType: '--match', tenantId: '--tenant', enabled: '--enable/--disable', body: 'flags', ...windowFlags() },
};

const update: Command = {
  spec: updateSpec,
  async run(context, { values, positionals, json }) {
    const id = unwrap(validateId(positionals[0]));
    if (values.enable === true && values.disable === true) throw new UsageError('give --enable or --disable, not both');
    const orNull = (name: string) => {
      const value = stringOption(values, name);
      return value === 'none' ? null : value;
    };
    const { repo } = await context.store();
    const pattern = stringOption(values, 'pattern');
    const matchType = stringOption(values, 'match');
    // A new pattern is checked against the current match type and the other way round.
    const current = pattern !== undefined || matchType !== undefined ? await repo.mappings.get(id) : undefined;
    const patch = unwrap(
      validateMappingPatch(
        definedOnly({
          pattern,
          matchType,
          priority: stringOption(values, 'priority'),
          tenantId: orNull('tenant'),
          tenantName: orNull('tenant-name'),
          tenantType: orNull('tenant-type'),
          description: orNull('description'),
          enabled: values.enable === true ? true : values.disable === true ? false : undefined,
          window: orNull('window'),
        }),
        current,
      ),
    );
    const row = await repo.mappings.update(id, patch, context.actor);
    if (json) printJson(context.output, { mapping: presentMapping(row) });
    else {
      context.output.out(`Updated mapping ${row.id}\n`);
      printRecord(context.output, mappingRecord(row));
    }
    return 0;
  },
};

function mappingRecord(row: MappingRow): Array<[string, unknown]> {
  return [
    ['pattern', row.pattern],
    ['match', row.matchType],
    ['priority', row.priority],
    ['tenant', row.tenantId],
    ['window', row.window === null ? 'always' : windowText(row.window)],
    ['enabled', row.enabled],
  ];
}

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
  commands: [add, update, list, remove],
};

const MAPPING_COLUMNS: readonly Column<MappingRow>[] = [
  { header: 'id', value: (m) => m.id },
  { header: 'match', value: (m) => m.matchType },
  { header: 'pattern', value: (m) => m.pattern },
  { header: 'priority', value: (m) => m.priority },
  { header: 'tenant', value: (m) => m.tenantId },
  { header: 'window', value: (m) => (m.window === null ? 'always' : windowText(m.window)) },
  { header: 'tenant name', value: (m) => m.tenantName },
  { header: 'type', value: (m) => m.tenantType },
  { header: 'enabled', value: (m) => m.enabled },
  { header: 'description', value: (m) => m.description },
];
