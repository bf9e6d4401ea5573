// `keypool apply|diff|dump`: keypool.yaml against the store (format: src/declarative, README "Declarative
// configuration"). diff exits 0 in sync, 3 with changes pending, 2 on bad input, 1 on infrastructure failure, so CI
// can gate on it. The declarative modules (and the yaml parser) load only when one of these commands runs.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { stringOption, UsageError, type CommandSpec } from './args.js';
import type { CliContext, Command } from './command.js';
import { printJson } from './output.js';
import type { FileProblem } from '../declarative/model.js';

/** `keypool diff`: the store differs from the file. */
export const EXIT_CHANGES_PENDING = 3;
const EXIT_BAD_INPUT = 2;
/** A configuration file is text a person wrote; anything larger is a mistake. */
const MAX_FILE_BYTES = 8 * 1024 * 1024;

const fileOptions = {
  file: { type: 'string', short: 'f', valueName: 'FILE', description: 'keypool.yaml to reconcile (`-` reads stdin), required' },
  prune: { type: 'boolean', description: 'also soft-delete accounts, keys and mappings the file does not name (only in sections the file has)' },
} as const;

const applySpec: CommandSpec = {
  name: 'apply',
  summary: 'Reconcile the store to a keypool.yaml in one transaction (audited as actor `apply`).',
  options: fileOptions,
  details: [
    'Entities are matched by name (accounts by provider and name, mappings by match type and pattern).',
    'Upstream keys are read from the references the file names ({env: VAR}, {file: PATH}) and never printed.',
    'A key the file creates without `import:` is issued and printed once, like `keypool keys create`.',
  ].join('\n'),
};

const diffSpec: CommandSpec = {
  name: 'diff',
  summary: 'Print what `apply` would change; exit 0 in sync, 3 changes pending, 2 bad input, 1 failure.',
  options: fileOptions,
};

const dumpSpec: CommandSpec = {
  name: 'dump',
  summary: 'Print the store as a keypool.yaml (secrets are never dumped; `dump | apply -f -` changes nothing).',
};

export const applyCommand: Command = {
  spec: applySpec,
  run: (context, { values, json }) => reconcileFile(context, stringOption(values, 'file'), values.prune === true, json, true),
};

export const diffCommand: Command = {
  spec: diffSpec,
  run: (context, { values, json }) => reconcileFile(context, stringOption(values, 'file'), values.prune === true, json, false),
};

export const dumpCommand: Command = {
  spec: dumpSpec,
  async run(context, { json }) {
    const [{ loadCurrentState }, { dumpConfig }] = await Promise.all([import('../declarative/reconcile.js'), import('../declarative/dump.js')]);
    const { repo } = await context.store();
    const text = dumpConfig(await loadCurrentState(repo));
    if (json) printJson(context.output, (await import('yaml')).parse(text));
    else context.output.out(text);
    return 0;
  },
};

async function reconcileFile(context: CliContext, file: string | undefined, prune: boolean, json: boolean, write: boolean): Promise<number> {
  if (file === undefined) throw new UsageError('-f FILE is required (`-f -` reads the file from stdin)');
  const [{ parseConfigText, formatProblems }, { resolveSecrets }, { reconcile }, { renderPlanText, planJson }] = await Promise.all([
    import('../declarative/parse.js'),
    import('../declarative/secrets.js'),
    import('../declarative/reconcile.js'),
    import('../declarative/render.js'),
  ]);
  const fileName = file === '-' ? '<stdin>' : file;
  const text = await readConfigText(context, file);
  const parsed = parseConfigText(text);
  const located = (problems: readonly FileProblem[]) => (parsed.ok ? problems.map((p) => ({ ...p, line: p.line ?? parsed.lineOf(p.path) })) : problems);
  const bad = (problems: readonly FileProblem[]) => badInput(context, json, formatProblems(fileName, located(problems)), located(problems));
  if (!parsed.ok) return bad(parsed.problems);
  const baseDir = file === '-' ? process.cwd() : dirname(resolve(file));
  const resolved = await resolveSecrets(parsed.state, { env: context.env, baseDir });
  if (resolved.problems.length > 0) return bad(resolved.problems);
  const { repo } = await context.store();
  const result = await reconcile(repo, parsed.state, resolved.secrets, { prune, nowMs: context.nowMs(), write });
  if (result.plan.problems.length > 0) return bad(result.plan.problems);
  const issued = result.issued.map((k) => ({ name: k.name, api_key: k.plaintextKey }));
  if (json) printJson(context.output, { ...planJson(result.plan), applied: result.written, issued_keys: issued });
  else {
    context.output.out(renderPlanText(result.plan));
    if (result.written) context.output.out(`applied ${result.plan.changes.length} change(s) in one transaction\n`);
    for (const key of issued) context.output.out(`issued key ${key.name}: ${key.api_key}\n  (shown once; store it now)\n`);
  }
  if (!write && result.plan.changes.length > 0) return EXIT_CHANGES_PENDING;
  return 0;
}

function badInput(context: CliContext, json: boolean, text: string, problems: readonly FileProblem[]): number {
  if (json) {
    const details = problems.map((p) => ({ path: p.path, line: p.line, message: p.message }));
    context.output.err(`${JSON.stringify({ error: { code: 'invalid_config', message: text.split('\n')[0], details } })}\n`);
  } else context.output.err(`keypool: invalid configuration\n${text.split('\n').map((l) => `  ${l}\n`).join('')}`);
  return EXIT_BAD_INPUT;
}

async function readConfigText(context: CliContext, file: string): Promise<string> {
  if (file !== '-') {
    try {
      const text = await readFile(file, 'utf8');
      if (text.length > MAX_FILE_BYTES) throw new UsageError(`${file} is larger than ${MAX_FILE_BYTES} bytes`);
      return text;
    } catch (error) {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of context.stdin) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buffer.length;
    if (size > MAX_FILE_BYTES) throw new UsageError(`stdin is larger than ${MAX_FILE_BYTES} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
