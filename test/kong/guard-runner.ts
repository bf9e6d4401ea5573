// Runs the Lua fail-closed guard (kong/guard.lua) under luajit the way Kong's post-function does (loadstring, then
// call), against a minimal fake `kong` whose kong.ctx.shared holds what keypool recorded. Shared by the guard's own
// tests and the cross-adapter scenario table.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { DECISION_KEY } from '../../src/adapters/kong/codec.js';
import { GUARD_PATH, haveTool } from './kong-tools.js';

/** What the client gets: the guard passed (Kong proxies the request) or answered with kong.response.exit. */
export type GuardAnswer =
  | { readonly exited: false }
  | { readonly exited: true; readonly status: number; readonly body: string; readonly headers: Record<string, string> };

export const HAVE_LUAJIT = haveTool('luajit', ['-v'], 'apt-get install -y luajit');

/** kong/guard.lua, as kong.yml must inline it. */
export const GUARD_SOURCE = readFileSync(GUARD_PATH, 'utf8');

/** A JS value as a Lua table constructor (what MessagePack turns it into inside Kong). */
export function toLua(value: unknown): string {
  if (value === undefined || value === null) return 'nil';
  if (typeof value === 'string') {
    let level = '';
    while (value.includes(`]${level}]`)) level += '=';
    return `[${level}[${value}]${level}]`;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `{${value.map(toLua).join(', ')}}`;
  return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `[ ${toLua(k)} ] = ${toLua(v)}`).join(', ')}}`;
}

/** Runs the guard with kong.ctx.shared.keypool_decision = recorded (luajit must be installed). */
export function runGuardUnderLuajit(recorded: unknown): GuardAnswer {
  return runGuardFull(recorded).answer;
}

/** The kong.log.set_serialize_value keys the guard set (each to REDACTED) for `recorded`. */
export function guardRedactions(recorded: unknown): string[] {
  return runGuardFull(recorded).redacted;
}

function runGuardFull(recorded: unknown): { answer: GuardAnswer; redacted: string[] } {
  const script = `
    local out = {}
    kong = {
      ctx = { shared = { ${DECISION_KEY} = ${toLua(recorded)} } },
      log = { set_serialize_value = function(key, value)
        out[#out + 1] = "serialize\\t" .. tostring(key) .. "\\t" .. tostring(value)
      end },
      response = { exit = function(status, body, headers)
        out[#out + 1] = "exit\\t" .. tostring(status)
        out[#out + 1] = "body\\t" .. tostring(body)
        for k, v in pairs(headers or {}) do out[#out + 1] = "header\\t" .. k .. "\\t" .. v end
      end },
    }
    local chunk = assert(loadstring(io.read("*a"), "=post-function"))
    chunk()
    io.write(table.concat(out, "\\n"))
  `;
  const run = spawnSync('luajit', ['-e', script], { input: GUARD_SOURCE, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`luajit failed: ${run.stderr}`);
  let status: number | null = null;
  let body = '';
  const headers: Record<string, string> = {};
  const redacted: string[] = [];
  for (const line of run.stdout.split('\n')) {
    const [kind, a = '', b = ''] = line.split('\t');
    if (kind === 'exit') status = Number(a);
    if (kind === 'body') body = a;
    if (kind === 'header') headers[a] = b;
    if (kind === 'serialize' && b === 'REDACTED') redacted.push(a);
  }
  const answer: GuardAnswer = status === null ? { exited: false } : { exited: true, status, body, headers };
  return { answer, redacted };
}
