// What a Kong client receives for a request keypool decided: kong/guard.lua (the bundled post-function that runs
// after keypool) executed by luajit against a minimal fake `kong` holding the decision keypool recorded in
// kong.ctx.shared (after its MessagePack trip through a Lua table). The guard either passes (allow: Kong proxies
// the request) or calls kong.response.exit(status, body, headers), which is the client's answer.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { DECISION_KEY, UNAVAILABLE_RECORD } from '../../src/adapters/kong/codec.js';
import { GUARD_PATH, REQUIRE_KONG_TOOLS, haveTool } from '../kong/kong-tools.js';

export type GuardAnswer =
  | { readonly exited: false }
  | { readonly exited: true; readonly status: number; readonly body: string; readonly headers: Record<string, string> };

const GUARD = readFileSync(GUARD_PATH, 'utf8');

/**
 * True when luajit runs. Without it the scenario runs read the recorded decision instead (the guard answers it
 * verbatim: test/kong/guard.test.ts); KEYPOOL_REQUIRE_KONG_TOOLS=1 makes a missing luajit fail instead.
 */
export const HAVE_LUAJIT = haveTool('luajit', ['-v'], 'apt-get install -y luajit');
if (!HAVE_LUAJIT && REQUIRE_KONG_TOOLS) throw new Error('KEYPOOL_REQUIRE_KONG_TOOLS=1 but luajit is not installed');

/** A JS value as a Lua table constructor (what MessagePack turns it into inside Kong). */
function toLua(value: unknown): string {
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

/** Runs the guard as post-function does (loadstring, call) with kong.ctx.shared.keypool_decision = recorded. */
export function runGuard(recorded: unknown): GuardAnswer {
  if (!HAVE_LUAJIT) return readRecord(recorded);
  const script = `
    local out = {}
    kong = {
      ctx = { shared = { ${DECISION_KEY} = ${toLua(recorded)} } },
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
  const run = spawnSync('luajit', ['-e', script], { input: GUARD, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`luajit failed: ${run.stderr}`);
  let status: number | null = null;
  let body = '';
  const headers: Record<string, string> = {};
  for (const line of run.stdout.split('\n')) {
    const [kind, a = '', b = ''] = line.split('\t');
    if (kind === 'exit') status = Number(a);
    if (kind === 'body') body = a;
    if (kind === 'header') headers[a] = b;
  }
  return status === null ? { exited: false } : { exited: true, status, body, headers };
}

/** The guard's contract without luajit: allow passes, a recorded denial is answered as recorded, else 503. */
function readRecord(recorded: unknown): GuardAnswer {
  const record = recorded as { action?: string; status?: number; body?: string; headers?: Record<string, string> } | undefined;
  if (record?.action === 'allow') return { exited: false };
  if (record?.action !== 'deny' || typeof record.status !== 'number') return readRecord(UNAVAILABLE_RECORD);
  return { exited: true, status: record.status, body: record.body ?? '', headers: { ...(record.headers ?? {}) } };
}
