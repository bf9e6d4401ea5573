// `keypool crypto reencrypt`: moves every upstream account key to the current version of the key ring
// (KEYPOOL_ENCRYPTION_KEYS, first entry). Run it after adding a new key version, before dropping the old one.
import type { CommandSpec } from './args.js';
import type { Command, CommandGroup } from './command.js';
import { cellText, printJson } from './output.js';

const reencryptSpec: CommandSpec = {
  name: 'crypto reencrypt',
  summary: 'Re-encrypt every upstream account key with the current key-ring version.',
  details: [
    'Key rotation for KEYPOOL_ENCRYPTION_KEYS:',
    '  1. prepend the new version: KEYPOOL_ENCRYPTION_KEYS="v2:<base64 32 bytes>,v1:<old>"',
    '  2. restart keypool with it, then run: keypool crypto reencrypt',
    '  3. once it reports every account on v2, drop v1 from the variable.',
  ].join('\n'),
};

const reencrypt: Command = {
  spec: reencryptSpec,
  async run(context, { json }) {
    const { repo } = await context.store();
    const result = await repo.accounts.reencryptAll(context.actor);
    // Accounts that could not be decrypted (their version is missing from the ring) keep the old ciphertext:
    // the operator must not drop that version yet, so the command fails (exit 1) and names them.
    const exitCode = result.failed.length > 0 ? 1 : 0;
    if (json) {
      printJson(context.output, {
        current_version: result.currentVersion,
        total: result.total,
        reencrypted: result.reencrypted,
        already_current: result.alreadyCurrent,
        failed: result.failed,
      });
      return exitCode;
    }
    context.output.out(
      `Re-encrypted ${result.reencrypted} account key(s) to version ${result.currentVersion} ` +
        `(${result.alreadyCurrent} already current, ${result.total} in total)\n`,
    );
    if (result.failed.length > 0) {
      context.output.err(`keypool: ${result.failed.length} account key(s) could not be re-encrypted:\n`);
      for (const f of result.failed) context.output.err(`  ${f.id} ${cellText(f.name)}: ${f.reason}\n`);
    }
    return exitCode;
  },
};

export const cryptoGroup: CommandGroup = {
  name: 'crypto',
  summary: 'Manage encryption of stored upstream keys.',
  commands: [reencrypt],
};
