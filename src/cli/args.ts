// Argument parsing for every `keypool` command: node:util parseArgs plus help text and usage errors.
// Every command declares its flags once (a CommandSpec); the same spec drives parsing and `--help`.
import { parseArgs } from 'node:util';

/** Bad command line (unknown flag, missing argument). The CLI prints it with the command's usage and exits 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** Usage line of the command, appended to the message. */
    readonly usage?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  /** The flag may repeat (`--tag a=1 --tag b=2`); values arrive as a list. */
  readonly multiple?: boolean;
  /** Placeholder in help (`--grace DURATION`). */
  readonly valueName?: string;
  readonly description: string;
}

export interface CommandSpec {
  /** `keys create` */
  readonly name: string;
  readonly summary: string;
  /** Positional arguments in order; optional ones come last. */
  readonly positionals?: readonly { readonly name: string; readonly description: string; readonly optional?: boolean }[];
  readonly options?: Readonly<Record<string, OptionSpec>>;
  /** Extra help paragraphs (examples, notes). */
  readonly details?: string;
  /**
   * Flags refused with a specific explanation instead of "unknown option" (e.g. `--api-key`: secrets never go in
   * argv). The value after such a flag is never echoed.
   */
  readonly refused?: Readonly<Record<string, string>>;
  /** Positional values are never echoed in errors (a secret pasted by mistake). */
  readonly hidePositionals?: boolean;
  /**
   * How validation field names read on this command line (`tenantId` -> `--tenant`). Unlisted fields map to
   * `<name>` when a positional has that name, else to `--kebab-case`.
   */
  readonly fieldFlags?: Readonly<Record<string, string>>;
}

export type OptionValues = Readonly<Record<string, string | boolean | string[] | undefined>>;

export interface ParsedCommand {
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  readonly json: boolean;
  readonly help: boolean;
}

/** Flags every command accepts. */
export const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  json: { type: 'boolean', description: 'machine-readable JSON on stdout' },
  help: { type: 'boolean', short: 'h', description: 'show this help' },
};

export function parseCommand(spec: CommandSpec, argv: readonly string[]): ParsedCommand {
  checkRefused(spec, argv);
  const options = { ...GLOBAL_OPTIONS, ...spec.options };
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    }) as { values: Record<string, unknown>; positionals: string[] };
  } catch (error) {
    throw new UsageError(describeParseError(error), usageLine(spec));
  }
  const help = parsed.values.help === true;
  const expected = spec.positionals ?? [];
  if (!help) {
    const required = expected.filter((p) => !p.optional).length;
    if (parsed.positionals.length < required) {
      const missing = expected[parsed.positionals.length]!;
      throw new UsageError(`missing argument <${missing.name}>`, usageLine(spec));
    }
    if (parsed.positionals.length > expected.length) {
      const extra = parsed.positionals[expected.length]!;
      const shown = spec.hidePositionals ? '(value not shown)' : JSON.stringify(extra);
      throw new UsageError(`unexpected argument ${shown}`, usageLine(spec));
    }
  }
  return {
    values: parsed.values as OptionValues,
    positionals: parsed.positionals,
    json: parsed.values.json === true,
    help,
  };
}

/** A string flag's value, or undefined when absent. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function listOption(values: OptionValues, name: string): readonly string[] {
  const value = values[name];
  return Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
}

/** Drops undefined entries so validators see only the flags that were given. */
export function definedOnly(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
}

/** The command-line spelling of a validation field for this command. */
export function flagForField(spec: CommandSpec, field: string): string {
  const explicit = spec.fieldFlags?.[field];
  if (explicit !== undefined) return explicit;
  if (field === 'body') return field;
  if ((spec.positionals ?? []).some((p) => p.name === field)) return `<${field}>`;
  return `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

export function usageLine(spec: CommandSpec): string {
  const positionals = (spec.positionals ?? []).map((p) => (p.optional ? ` [${p.name}]` : ` <${p.name}>`)).join('');
  const hasOptions = Object.keys(spec.options ?? {}).length > 0;
  return `keypool ${spec.name}${positionals}${hasOptions ? ' [options]' : ''} [--json]`;
}

export function helpText(spec: CommandSpec): string {
  const lines = [`${spec.summary}`, '', `Usage: ${usageLine(spec)}`];
  if (spec.positionals && spec.positionals.length > 0) {
    lines.push('', 'Arguments:');
    for (const p of spec.positionals) lines.push(`  ${(p.optional ? `[${p.name}]` : `<${p.name}>`).padEnd(30)}${p.description}`);
  }
  lines.push('', 'Options:');
  for (const [name, o] of Object.entries({ ...spec.options, ...GLOBAL_OPTIONS })) {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` ${o.valueName ?? 'VALUE'}` : ''}`;
    lines.push(`  ${flag.padEnd(30)}${o.description}${o.multiple ? ' (repeatable)' : ''}`);
  }
  if (spec.details) lines.push('', spec.details);
  return `${lines.join('\n')}\n`;
}

/** A command group's help: its subcommands with summaries. */
export function groupHelp(group: string, summary: string, commands: readonly CommandSpec[]): string {
  const lines = [summary, '', `Usage: keypool ${group} <command> [options]`, '', 'Commands:'];
  for (const c of commands) lines.push(`  ${c.name.slice(group.length + 1).padEnd(14)}${c.summary}`);
  lines.push('', `Run \`keypool ${group} <command> --help\` for a command's options.`);
  return `${lines.join('\n')}\n`;
}

function checkRefused(spec: CommandSpec, argv: readonly string[]): void {
  if (!spec.refused) return;
  for (const arg of argv) {
    if (arg === '--') break;
    const flag = arg.startsWith('--') ? arg.split('=', 1)[0]! : arg;
    const reason = spec.refused[flag];
    if (reason !== undefined) throw new UsageError(`${flag} is not accepted: ${reason}`, usageLine(spec));
  }
}

/** parseArgs messages quote whole tokens (`--flag=value`); rebuild them naming only the flag. */
function describeParseError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const match = /'([^']*)'/.exec(message);
    const flag = (match?.[1] ?? '').split('=', 1)[0] ?? '';
    return flag ? `unknown option ${flag}` : 'unknown option';
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const flag = /--[A-Za-z0-9-]+/.exec(message)?.[0];
    if (flag && /does not take/.test(message)) return `option ${flag} does not take a value`;
    if (flag) return `option ${flag} needs a value`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return 'unexpected argument';
  return message.split('\n', 1)[0] ?? 'invalid arguments';
}
