// What a Kong client receives for a request keypool decided: kong/guard.lua (the bundled post-function that runs
// after keypool) executed by luajit against a minimal fake `kong` holding the decision keypool recorded in
// kong.ctx.shared (after its MessagePack trip through a Lua table). The guard either passes (allow: Kong proxies
// the request) or calls kong.response.exit(status, body, headers), which is the client's answer.
import { UNAVAILABLE_RECORD } from '../../src/adapters/kong/codec.js';
import { REQUIRE_KONG_TOOLS } from '../kong/kong-tools.js';
import { HAVE_LUAJIT, runGuardUnderLuajit, type GuardAnswer } from '../kong/guard-runner.js';

export { HAVE_LUAJIT, type GuardAnswer };

/**
 * True when luajit runs. Without it the scenario runs read the recorded decision instead (the guard answers it
 * verbatim: test/kong/guard.test.ts); KEYPOOL_REQUIRE_KONG_TOOLS=1 makes a missing luajit fail instead.
 */
if (!HAVE_LUAJIT && REQUIRE_KONG_TOOLS) throw new Error('KEYPOOL_REQUIRE_KONG_TOOLS=1 but luajit is not installed');

/** Runs the guard as post-function does (loadstring, call) with kong.ctx.shared.keypool_decision = recorded. */
export function runGuard(recorded: unknown): GuardAnswer {
  return HAVE_LUAJIT ? runGuardUnderLuajit(recorded) : readRecord(recorded);
}

/** The guard's contract without luajit: allow passes, a recorded denial is answered as recorded, else 503. */
function readRecord(recorded: unknown): GuardAnswer {
  const record = recorded as { action?: string; status?: number; body?: string; headers?: Record<string, string> } | undefined;
  if (record?.action === 'allow') return { exited: false };
  if (record?.action !== 'deny' || typeof record.status !== 'number') return readRecord(UNAVAILABLE_RECORD);
  return { exited: true, status: record.status, body: record.body ?? '', headers: { ...(record.headers ?? {}) } };
}
