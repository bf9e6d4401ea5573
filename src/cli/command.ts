// What a `keypool` command is: a spec (flags, help) and a run function over a small context.
import type { CommandSpec, ParsedCommand } from './args.js';
import type { Output } from './output.js';
import type { CliStore } from './store.js';

export interface CliContext {
  readonly output: Output;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: NodeJS.ReadableStream & { readonly isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  /** Recorded as the actor of every write (`cli:$USER`, or `cli`). */
  readonly actor: string;
  nowMs(): number;
  /** Opens the configured store once (schema required); closed by the runner when the command ends. */
  store(): Promise<CliStore>;
}

export interface Command {
  readonly spec: CommandSpec;
  /** Resolves to the exit code (0 normally); bad input throws UsageError / ValidationFailure. */
  run(context: CliContext, args: ParsedCommand): Promise<number>;
}

export interface CommandGroup {
  readonly name: string;
  readonly summary: string;
  readonly commands: readonly Command[];
}
