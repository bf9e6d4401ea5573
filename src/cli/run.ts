// Dispatch of `keypool <group> <command>` and the one place errors become messages and exit codes:
//   0 done; 1 infrastructure failure (database unreachable, schema missing, unexpected error);
//   2 bad input (unknown flag or command, invalid value, unknown id or provider, conflict, bad configuration).
// Only the modules a command needs are loaded: the store on first use, the service only for `serve`.
import { accountsGroup } from './accounts.js';
import { auditGroup } from './audit-cmd.js';
import { flagForField, groupHelp, helpText, parseCommand, UsageError } from './args.js';
import type { CliContext, Command, CommandGroup } from './command.js';
import { configGroup } from './config-cmd.js';
import { cryptoGroup } from './crypto-cmd.js';
import { applyCommand, diffCommand, dumpCommand } from './declarative.js';
import { keysGroup } from './keys.js';
import { mappingsGroup } from './mappings.js';
import { providersGroup } from './providers.js';
import { tenantsGroup } from './tenants.js';
import { pricesGroup } from './prices.js';
import { migrateCommand } from './migrate.js';
import { processOutput, type Output } from './output.js';
import { serveCommand } from './serve.js';
import { openCliStore, SchemaMissingError, type CliStore } from './store.js';
import { type FieldError, ValidationFailure, formatErrors } from '../catalog/validated.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const GROUPS: readonly CommandGroup[] = [keysGroup, providersGroup, accountsGroup, mappingsGroup, tenantsGroup, pricesGroup, configGroup, cryptoGroup, auditGroup];
const TOP_LEVEL: Readonly<Record<string, Command>> = {
  migrate: migrateCommand,
  serve: serveCommand,
  apply: applyCommand,
  diff: diffCommand,
  dump: dumpCommand,
};

export interface RunOptions {
  readonly output?: Output;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly stdin?: CliContext['stdin'];
  readonly nowMs?: () => number;
}

/** Runs one command line (without `node keypool`); resolves to the exit code. Never throws. */
export async function runCli(argv: readonly string[], options: RunOptions = {}): Promise<number> {
  const output = options.output ?? processOutput;
  const env = options.env ?? process.env;
  let store: Promise<CliStore> | null = null;
  const context: CliContext = {
    output,
    env,
    stdin: options.stdin ?? process.stdin,
    actor: actorName(env),
    nowMs: options.nowMs ?? Date.now,
    store: () => (store ??= openCliStore(env)),
  };
  try {
    return await dispatch(context, argv);
  } catch (error) {
    return report(output, error, wantsJson(argv), Boolean(env.KEYPOOL_DEBUG));
  } finally {
    if (store !== null) await (store as Promise<CliStore>).then((s) => s.close(), () => undefined).catch(() => undefined);
  }
}

/** `--json` anywhere before `--` (errors are then JSON too, even when parsing failed). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

async function dispatch(context: CliContext, argv: readonly string[]): Promise<number> {
  const [first, second, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    context.output.out(topHelp());
    return first === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (first === '--version' || first === '-v') {
    context.output.out(`${await version()}\n`);
    return EXIT_OK;
  }
  const topLevel = TOP_LEVEL[first];
  if (topLevel) return runCommand(context, topLevel, argv.slice(1));
  const group = GROUPS.find((g) => g.name === first);
  if (!group) throw new UsageError(`unknown command ${JSON.stringify(first)}; run \`keypool --help\``);
  const commandHelp = groupHelp(group.name, group.summary, group.commands.map((c) => c.spec));
  if (second === undefined || second === '--help' || second === '-h' || second === 'help') {
    context.output.out(commandHelp);
    return second === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const command = group.commands.find((c) => c.spec.name === `${group.name} ${second}`);
  if (!command) throw new UsageError(`unknown command ${JSON.stringify(`${group.name} ${second}`)}\n\n${commandHelp.trimEnd()}`);
  return runCommand(context, command, rest);
}

async function runCommand(context: CliContext, command: Command, argv: readonly string[]): Promise<number> {
  const parsed = parseCommand(command.spec, argv);
  if (parsed.help) {
    context.output.out(helpText(command.spec));
    return EXIT_OK;
  }
  try {
    return await command.run(context, parsed);
  } catch (error) {
    throw error instanceof ValidationFailure ? inFlagTerms(command, error) : error;
  }
}

/** Validation speaks field names (`allowedIps`); on the command line they read as flags (`--allowed-ips`). */
function inFlagTerms(command: Command, failure: ValidationFailure): ValidationFailure {
  return new ValidationFailure(
    failure.errors.map((e) => {
      const flag = flagForField(command.spec, e.field);
      const message = e.message.startsWith(e.field) ? `${flag}${e.message.slice(e.field.length)}` : e.message;
      return { ...e, field: flag, message };
    }),
  );
}

interface Failure {
  readonly exitCode: number;
  /** Machine code for --json: a validation code, `usage`, `not_found`, `conflict`, `schema_missing`, ... */
  readonly code: string;
  readonly message: string;
  readonly field: string | null;
  readonly details?: readonly FieldError[];
}

/** Exit code by kind, message on stderr (as `{"error":{...}}` with --json). No message carries a secret. */
function report(output: Output, error: unknown, json: boolean, debug: boolean): number {
  const failure = classify(error);
  if (json) {
    const { exitCode: _exitCode, ...body } = failure;
    output.err(`${JSON.stringify({ error: body })}\n`);
  } else if (failure.details) {
    output.err(`keypool: invalid input\n${formatErrors(failure.details).split('\n').map((l) => `  ${l}\n`).join('')}`);
  } else {
    output.err(`keypool: ${failure.message}\n`);
  }
  if (debug && failure.exitCode === EXIT_FAILURE && error instanceof Error && error.stack) output.err(`${error.stack}\n`);
  return failure.exitCode;
}

function classify(error: unknown): Failure {
  if (error instanceof UsageError) {
    const message = error.usage ? `${error.message}\nusage: ${error.usage}` : error.message;
    return { exitCode: EXIT_USAGE, code: 'usage', message, field: null };
  }
  if (error instanceof ValidationFailure) {
    const first = error.errors[0]!;
    return { exitCode: EXIT_USAGE, code: first.code, message: first.message, field: first.field, details: error.errors };
  }
  if (error instanceof SchemaMissingError) return { exitCode: EXIT_FAILURE, code: 'schema_missing', message: error.message, field: null };
  const name = error instanceof Error ? error.name : '';
  const message = error instanceof Error ? error.message : String(error);
  const field = typeof (error as { field?: unknown })?.field === 'string' ? (error as { field: string }).field : null;
  const storeCode = STORE_ERROR_CODES[name];
  if (storeCode) return { exitCode: EXIT_USAGE, code: storeCode, message, field };
  if (CONFIG_ERROR_NAMES.has(name) || (name === 'SecretError' && (error as { code?: unknown }).code === 'bad_ring')) {
    return { exitCode: EXIT_USAGE, code: 'config_error', message: `configuration error: ${message}`, field: null };
  }
  return { exitCode: EXIT_FAILURE, code: 'failure', message: message || name || 'unexpected error', field: null };
}

/**
 * The store's refusals (src/stores/errors.ts) and configuration errors (src/config.ts, src/secrets/*), recognised
 * by name: their modules load lazily, only when a command opens the store.
 */
const STORE_ERROR_CODES: Readonly<Record<string, string>> = {
  NotFoundError: 'not_found',
  ConflictError: 'conflict',
  InvalidInputError: 'invalid_input',
  StateError: 'invalid_state',
};
const CONFIG_ERROR_NAMES = new Set(['ConfigError', 'SecretsConfigError', 'PepperError']);

/** `cli:$USER` (sanitised), or `cli`. */
export function actorName(env: Readonly<Record<string, string | undefined>>): string {
  const user = env.USER ?? env.LOGNAME ?? env.USERNAME;
  return user && /^[A-Za-z0-9._-]{1,64}$/.test(user) ? `cli:${user}` : 'cli';
}

function topHelp(): string {
  const lines = [
    'keypool: credential-pool decision service for Envoy (ext_proc) and Kong.',
    '',
    'Usage: keypool <command> [options]',
    '',
    'Commands:',
    `  ${'migrate'.padEnd(12)}${migrateCommand.spec.summary}`,
    `  ${'serve'.padEnd(12)}${serveCommand.spec.summary}`,
    ...[applyCommand, diffCommand, dumpCommand].map((c) => `  ${c.spec.name.padEnd(12)}${c.spec.summary}`),
    ...GROUPS.map((g) => `  ${g.name.padEnd(12)}${g.summary} (${g.commands.map((c) => c.spec.name.slice(g.name.length + 1)).join('|')})`),
    '',
    'Every command takes --help and --json. Exit codes: 0 ok, 1 infrastructure failure, 2 bad input (diff: 3 changes pending).',
    'Environment: DATABASE_URL (unset = embedded store in KEYPOOL_DATA_DIR, default ./.keypool),',
    '  KEYPOOL_ENCRYPTION_KEYS and KEYPOOL_KEY_PEPPER (generated into the data dir when both are unset).',
  ];
  return `${lines.join('\n')}\n`;
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  // dist/src/cli/run.js and src/cli/run.ts both sit three levels below the package root.
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(await readFile(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'keypool') return `keypool ${pkg.version ?? ''}`.trim();
    } catch {
      // try the next location
    }
  }
  return 'keypool';
}
