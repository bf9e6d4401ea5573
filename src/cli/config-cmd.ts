// `keypool config set|get`: runtime settings (priority.enabled, priority.default_priority, priority.reserve,
// queue.max_wait_ms, queue.max_length).
// A change reaches every running instance through the store's change feed.
import type { CommandSpec } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson, printTable } from './output.js';
import {
  SETTING_NAMES,
  settingsByName,
  type SettingName,
  type SettingValue,
  validateSetting,
  validateSettingName,
} from '../catalog/settings/schema.js';
import { unwrap } from '../catalog/validated.js';

const SETTINGS_HELP = [
  'Settings:',
  '  priority.enabled            true | false: match keys against priority mappings (default false)',
  '  priority.default_priority   0-9: priority when no mapping matches or matching is off (default 7)',
  '  priority.reserve            fraction of an account\'s capacity each priority leaves free for higher ones, as a',
  '                              JSON array of 10 (P0..P9) or an object of some: \'{"P7":0.5}\'',
  '                              (default [0,0,0,0.1,0.1,0.1,0.25,0.25,0.25,0.25]; applies while priority.enabled)',
  '  queue.max_wait_ms           0-30000: how long a request may wait for an account of an exhausted pool, in',
  '                              priority order, before its 429 (default 0 = answer at once)',
  '  queue.max_length            1-100000: requests that may wait at once per keypool replica (default 1000)',
  '  tokens.default_output       1-1000000: output tokens a request reserves for exact TPM and token quotas when',
  '                              its body names no max_tokens (default 1024)',
].join('\n');

const setSpec: CommandSpec = {
  name: 'config set',
  summary: 'Change a runtime setting.',
  positionals: [
    { name: 'name', description: SETTING_NAMES.join(' | ') },
    { name: 'value', description: 'new value' },
  ],
  details: `${SETTINGS_HELP}\n\nExample:\n  keypool config set priority.enabled true`,
};

const set: Command = {
  spec: setSpec,
  async run(context, { positionals, json }) {
    const setting = unwrap(validateSetting(positionals[0], positionals[1]));
    const { repo } = await context.store();
    await repo.settings.set(setting.name, setting.value, context.actor);
    if (json) printJson(context.output, setting);
    else context.output.out(`${setting.name} = ${shown(setting.value)}\n`);
    return 0;
  },
};

const getSpec: CommandSpec = {
  name: 'config get',
  summary: 'Show runtime settings (all, or the one named).',
  positionals: [{ name: 'name', description: SETTING_NAMES.join(' | '), optional: true }],
  details: SETTINGS_HELP,
};

const get: Command = {
  spec: getSpec,
  async run(context, { positionals, json }) {
    const only: SettingName | undefined = positionals[0] === undefined ? undefined : unwrap(validateSettingName(positionals[0]));
    const { repo } = await context.store();
    const settings = await readSettings(repo);
    const names = only === undefined ? SETTING_NAMES : [only];
    const rows = names.map((name) => ({ name, value: settings[name] }));
    if (json) printJson(context.output, only === undefined ? Object.fromEntries(rows.map((r) => [r.name, r.value])) : rows[0]);
    else printTable(context.output, [{ header: 'name', value: (r: (typeof rows)[number]) => r.name }, { header: 'value', value: (r) => shown(r.value) }], rows);
    return 0;
  },
};

export const configGroup: CommandGroup = {
  name: 'config',
  summary: 'Read and change runtime settings.',
  commands: [set, get],
};

function shown(value: SettingValue): string {
  return Array.isArray(value) ? JSON.stringify(value) : String(value);
}

async function readSettings(repo: import('./store.js').CliStore['repo']): Promise<Record<SettingName, SettingValue>> {
  return settingsByName(await repo.settings.get());
}
