// `keypool audit prune --before 90d`: deletes audit rows and usage buckets older than the given age, through the one
// path the append-only audit log allows (src/stores/retention.ts). The pruning is recorded as an `audit_pruned` row.
import { pruneOlderThan } from '../stores/retention.js';
import { stringOption, type CommandSpec } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { printJson } from './output.js';
import { validateRetention } from '../catalog/audit/schema.js';
import { unwrap } from '../catalog/validated.js';

const pruneSpec: CommandSpec = {
  name: 'audit prune',
  summary: 'Delete audit rows and usage stats older than an age (the pruning itself is audited).',
  options: {
    before: { type: 'string', valueName: 'AGE', description: 'delete what is older than this: 90d, 720h, ... (at least 1h), required' },
  },
  details: [
    'Automatic pruning: KEYPOOL_RETENTION_DAYS on `keypool serve`.',
    '',
    'Example:',
    '  keypool audit prune --before 90d',
  ].join('\n'),
};

const prune: Command = {
  spec: pruneSpec,
  async run(context, { values, json }) {
    const before = unwrap(validateRetention(stringOption(values, 'before'), context.nowMs()));
    const { repo } = await context.store();
    const result = await pruneOlderThan(repo, before, context.actor);
    if (json) printJson(context.output, result);
    else {
      context.output.out(
        `Pruned ${result.auditRows} audit rows and ${result.usageBuckets} usage buckets older than ${before.toISOString()}\n`,
      );
    }
    return 0;
  },
};

export const auditGroup: CommandGroup = {
  name: 'audit',
  summary: 'Audit log retention.',
  commands: [prune],
};
