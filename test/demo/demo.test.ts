// `npm run demo` (its built entry, as the script runs it) started as a newcomer would, then driven like the printed
// curl lines: through the real Envoy (envoy/envoy-local.yaml) to the bundled mock provider. Skips with a notice
// without an Envoy binary unless KEYPOOL_REQUIRE_ENVOY=1.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envoyOrSkip, validateEnvoyConfig } from '../helpers/envoy.js';

const ROOT = resolve(import.meta.dirname, '../..');
const ENVOY = envoyOrSkip('test/demo/demo.test.ts');
const START_TIMEOUT_MS = 180_000;

/** A port the OS just handed out (closed again before the demo binds it). */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

describe.skipIf(!ENVOY)('npm run demo: keypool + mock provider + Envoy on a laptop', () => {
  let dir: string;
  let demo: ChildProcess;
  let output = '';
  let gateway: string;
  let mock: string;
  let clientKey: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kp-demo-'));
    const [grpc, mockPort, envoyPort, envoyAdmin] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const env: Record<string, string | undefined> = {
      ...process.env,
      KEYPOOL_DATA_DIR: join(dir, 'data'),
      KEYPOOL_GRPC_LISTEN: `127.0.0.1:${grpc}`,
      KEYPOOL_ADMIN_LISTEN: '127.0.0.1:0',
      DEMO_MOCK_PORT: String(mockPort),
      DEMO_ENVOY_PORT: String(envoyPort),
      DEMO_ENVOY_ADMIN_PORT: String(envoyAdmin),
      LOG_LEVEL: 'silent',
      PATH: `${resolve(ENVOY as string, '..')}:${process.env.PATH ?? ''}`,
    };
    for (const name of ['DATABASE_URL', 'REDIS_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER']) delete env[name];
    demo = spawn(process.execPath, [join(ROOT, 'dist/src/demo/main.js')], { cwd: dir, env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`demo not ready:\n${output}`)), START_TIMEOUT_MS - 5_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('demo ready')) {
          clearTimeout(timer);
          ready();
        }
      };
      demo.stdout!.on('data', onData);
      demo.stderr!.on('data', onData);
      demo.once('exit', (code) => fail(new Error(`demo exited (${code}):\n${output}`)));
    });
    clientKey = /Client key \(works from localhost\): (\S+)/.exec(output)![1]!;
    gateway = /curl -s (http:\/\/127\.0\.0\.1:\d+)\/openai/.exec(output)![1]!;
    mock = /mock provider (http:\/\/127\.0\.0\.1:\d+)/.exec(output)![1]!;
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    if (demo && demo.exitCode === null) {
      const exited = new Promise((r) => demo.once('exit', r));
      demo.kill('SIGTERM');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ships a valid envoy/envoy-local.yaml', async () => {
    const result = await validateEnvoyConfig(ENVOY as string, join(ROOT, 'envoy/envoy-local.yaml'));
    expect(result.code, result.output).toBe(0);
  });

  it('prints a client key, a curl line and an SDK snippet', () => {
    expect(clientKey).toMatch(/^kp_demo_/);
    expect(output).toContain(`-H "authorization: Bearer ${clientKey}"`);
    expect(output).toContain(`OpenAI(base_url="${gateway}/openai/v1", api_key="${clientKey}")`);
  });

  it('the printed curl requests succeed: OpenAI JSON and SSE, Anthropic JSON; the mock saw a pooled key, never the client key', async () => {
    const chat = await fetch(`${gateway}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
      body: '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
    });
    expect(chat.status).toBe(200);
    expect(((await chat.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toContain('mock provider');
    const stream = await fetch(`${gateway}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
      body: '{"model":"m","stream":true,"messages":[]}',
    });
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    expect(await stream.text()).toContain('data: [DONE]');
    const message = await fetch(`${gateway}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': clientKey, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: '{"model":"claude","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}',
    });
    expect(message.status).toBe(200);
    expect(((await message.json()) as { type: string }).type).toBe('message');
    const seen = ((await (await fetch(`${mock}/__mock/requests`)).json()) as { requests: Array<{ auth: string; key_last4: string; tenant: string }> }).requests;
    expect(seen.map((r) => r.auth)).toEqual(['authorization', 'authorization', 'x-api-key']);
    expect(seen.every((r) => r.key_last4 !== clientKey.slice(-4) && r.tenant === 'demo')).toBe(true);
  });

  it('denials and scripted provider failures reach the client in the provider shape', async () => {
    const denied = await fetch(`${gateway}/anthropic/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'kp_wrong_key_0000000000', 'content-type': 'application/json' }, body: '{}' });
    expect(denied.status).toBe(401);
    expect(await denied.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error', code: 'invalid_api_key' } });
    const limited = await fetch(`${gateway}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json', 'x-mock-status': '429', 'x-mock-retry-after': '1' },
      body: '{"model":"m"}',
    });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(limited.headers.get('x-ratelimit-limit-requests')).toBe('60');
  });
});
