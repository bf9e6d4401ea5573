// Where an upstream secret comes from: an environment variable named by --key-env, piped stdin, or a hidden
// prompt on a terminal. Never argv: command lines are visible to every local user (ps, /proc) and land in shell
// history. Nothing here ever prints the secret.
import { UsageError } from './args.js';
import type { CliContext } from './command.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** Bound on what is read from stdin (a secret is at most 4096 characters; anything far longer is a mistake). */
const STDIN_MAX_BYTES = 64 * 1024;

export const SECRET_IN_ARGV_REASON =
  'secrets on the command line are visible to other local users (ps, /proc) and stay in shell history. ' +
  'Pipe the key on stdin (`printenv OPENAI_KEY | keypool accounts add ...`) or name an environment variable with --key-env VAR.';

export async function readUpstreamSecret(context: CliContext, keyEnv: string | undefined, label = 'Upstream API key'): Promise<string> {
  if (keyEnv !== undefined) return fromEnv(context, keyEnv);
  if (context.stdin.isTTY) return promptHidden(context, label);
  return trimOneNewline(await readAll(context.stdin));
}

function fromEnv(context: CliContext, name: string): string {
  if (!ENV_NAME.test(name)) {
    throw new UsageError('--key-env takes the NAME of an environment variable (e.g. OPENAI_KEY), not the key itself');
  }
  const value = context.env[name];
  if (value === undefined || value === '') {
    // The name is not repeated: a key pasted where the name belongs (`--key-env gsk_...`) looks like a valid name
    // too, and must not be printed.
    throw new UsageError('the environment variable named by --key-env is not set or empty');
  }
  return value;
}

/** A pasted key usually ends with one newline (`echo`, `printenv`); exactly one is removed, nothing else. */
export function trimOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buffer.length;
    if (size > STDIN_MAX_BYTES) throw new UsageError(`stdin is longer than ${STDIN_MAX_BYTES} bytes: expected one API key`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads one line from a terminal without echoing it. */
function promptHidden(context: CliContext, label: string): Promise<string> {
  const { stdin } = context;
  context.output.err(`${label} (input hidden, Enter to finish): `);
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (error: Error | null) => {
      stdin.removeListener('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      context.output.err('\n');
      if (error) reject(error);
      else resolve(text);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString()) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish(null);
        if (ch === '\u0003') return finish(new UsageError('cancelled'));
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    stdin.setRawMode?.(true);
    stdin.on('data', onData);
    stdin.resume();
  });
}
