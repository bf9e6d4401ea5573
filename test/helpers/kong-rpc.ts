// Kong's side of the JavaScript plugin server protocol, for tests: starts the real kong-js-pluginserver the way
// Kong does, and speaks Kong's MessagePack-RPC to it (kong/runloop/plugin_servers/mp_rpc.lua).
//
// Framing: one MessagePack array per message, no length prefix. Request [0, msgid, "plugin.Method", [args...]],
// response [1, msgid, error|nil, result|nil]. The server decodes each socket chunk as exactly one message, so a
// connection carries one call at a time (Kong does the same: a call, then the connection back to its pool).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { decodeMultiStream, encode } from '@msgpack/msgpack';

const requireHere = createRequire(import.meta.url);
const PDK_DIR = path.dirname(requireHere.resolve('kong-pdk/package.json'));
/** The server executable from the npm package kong-pdk. */
export const PLUGIN_SERVER_BIN = path.join(PDK_DIR, 'bin', 'kong-js-pluginserver');

/**
 * Environment for the plugin server. kong-pdk registers ts-node at load; installed inside this project, the
 * hoisted ts-node would pick up the project's TypeScript 7 (no JS API) and crash, so point it at kong-pdk's own
 * TypeScript. Not needed for a global `npm install -g kong-pdk`.
 */
export function pluginServerEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const pdkRequire = createRequire(path.join(PDK_DIR, 'package.json'));
  return {
    ...process.env,
    TS_NODE_COMPILER: pdkRequire.resolve('typescript'),
    TS_NODE_SKIP_PROJECT: 'true',
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------------------

export interface DumpResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly elapsedMs: number;
}

/**
 * Kong's query command: `kong-js-pluginserver --plugins-directory DIR --dump-all-plugins`, or `command` (a wrapper
 * script) with the same arguments. Kills it after timeoutMs.
 */
export function dumpAllPlugins(
  pluginsDir: string,
  options: { readonly command?: string; readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number } = {},
): Promise<DumpResult> {
  const startedAt = Date.now();
  const args = ['--plugins-directory', pluginsDir, '--dump-all-plugins'];
  const [command, argv] = options.command ? [options.command, args] : [process.execPath, [PLUGIN_SERVER_BIN, ...args]];
  const child = spawn(command, argv, { env: pluginServerEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, elapsedMs: Date.now() - startedAt });
    });
  });
}

export interface PluginServer {
  readonly pid: number;
  readonly socketPath: string;
  /** Everything the server printed (its log goes to stdout). */
  output(): string;
  /** Resident set size in KiB, from /proc. */
  rssKb(): number;
  stop(): Promise<void>;
}

/** Starts the server listening on `<prefix>/js_pluginserver.sock`, as pluginserver_js_start_cmd would. */
export async function startPluginServer(options: {
  readonly pluginsDir: string;
  readonly prefix: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Working directory of the server (default: this process's). */
  readonly cwd?: string;
}): Promise<PluginServer> {
  const socketPath = path.join(options.prefix, 'js_pluginserver.sock');
  const child = spawn(
    process.execPath,
    [PLUGIN_SERVER_BIN, '--plugins-directory', options.pluginsDir, '--kong-prefix', options.prefix],
    { env: pluginServerEnv(options.env), cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const append = (chunk: string): void => {
    output = (output + chunk).slice(-64_000); // bounded: a soak logs one line per instance start only
  };
  child.stdout?.setEncoding('utf8').on('data', append);
  child.stderr?.setEncoding('utf8').on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor(() => existsSync(socketPath) || child.exitCode !== null, 10_000);
    // The socket file appears at bind, a moment before listen: until then a connect is refused.
    while (child.exitCode === null && !(await accepts(socketPath))) await new Promise((resolve) => setTimeout(resolve, 20));
    if (child.exitCode !== null) throw new Error(`plugin server exited (${child.exitCode}): ${output}`);
  } catch (error) {
    await stopChild(child, exited);
    throw error;
  }
  const pid = child.pid ?? -1;
  return {
    pid,
    socketPath,
    output: () => output,
    rssKb: () => rssKb(pid),
    stop: () => stopChild(child, exited),
  };
}

/** Whether a connection to the socket is accepted (closed again at once). */
function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(killer);
}

export function rssKb(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// ---------------------------------------------------------------------------------------------------------
// MessagePack-RPC
// ---------------------------------------------------------------------------------------------------------

class Connection {
  private nextMsgId = 1;
  private readonly messages: AsyncIterator<unknown>;

  constructor(readonly socket: net.Socket) {
    this.messages = decodeMultiStream(socket)[Symbol.asyncIterator]();
  }

  async call(method: string, args: readonly unknown[]): Promise<unknown> {
    const msgId = this.nextMsgId++;
    this.socket.write(encode([0, msgId, method, args]));
    const next = await this.messages.next();
    if (next.done) throw new Error(`plugin server closed the connection during ${method}`);
    const message = next.value as [number, number, unknown, unknown];
    if (message[0] !== 1 || message[1] !== msgId) throw new Error(`unexpected RPC message ${JSON.stringify(message)}`);
    if (message[2] !== null && message[2] !== undefined) throw new RpcError(method, String(message[2]));
    return message[3];
  }
}

export class RpcError extends Error {
  constructor(
    readonly method: string,
    readonly serverMessage: string,
  ) {
    super(`${method}: ${serverMessage}`);
    this.name = 'RpcError';
  }
}

/** A client with a keepalive pool of connections, like Kong's per-worker cosocket pool. */
export class KongRpcClient {
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();

  constructor(private readonly socketPath: string) {}

  async call(method: string, ...args: unknown[]): Promise<unknown> {
    const connection = this.idle.pop() ?? (await this.connect());
    try {
      const result = await connection.call(method, args);
      this.idle.push(connection);
      return result;
    } catch (error) {
      if (error instanceof RpcError) this.idle.push(connection);
      else this.drop(connection);
      throw error;
    }
  }

  /** Connections opened so far and still open. */
  get connections(): number {
    return this.all.size;
  }

  close(): void {
    for (const connection of this.all) connection.socket.destroy();
    this.all.clear();
    this.idle.length = 0;
  }

  private connect(): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(this.socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        socket.on('error', () => undefined); // surfaced by the pending call instead
        const connection = new Connection(socket);
        this.all.add(connection);
        resolve(connection);
      });
    });
  }

  private drop(connection: Connection): void {
    connection.socket.destroy();
    this.all.delete(connection);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Instances and events
// ---------------------------------------------------------------------------------------------------------

/** Kong adds these to every plugin config it sends (kong/runloop/plugins_iterator.lua). */
export function kongConfig(pluginConfig: Record<string, unknown>, seq = 1): string {
  return JSON.stringify({
    ...pluginConfig,
    __plugin_id: '8f1d3c4e-2b6a-4e0f-9a51-7c2d1e0b9f3a',
    __seq__: seq,
    route_id: '2d9e5f1a-6c3b-4a8e-b7d0-1f4e2c9a8b6d',
    service_id: null,
    consumer_id: null,
  });
}

export interface InstanceStatus {
  readonly Name: string;
  readonly Id: number;
  readonly Config: Record<string, unknown>;
}

export async function startInstance(
  rpc: KongRpcClient,
  name: string,
  pluginConfig: Record<string, unknown>,
): Promise<InstanceStatus> {
  return (await rpc.call('plugin.StartInstance', { Name: name, Config: kongConfig(pluginConfig) })) as InstanceStatus;
}

/** Kong answers a PDK call with a result, or with an error (plugin.StepError). */
export type PdkAnswer = { readonly result: unknown } | { readonly error: string };

/** Kong's get_step_method: which Step variant carries each PDK call's result back. */
const STEP_METHOD_BY_PDK_METHOD: Readonly<Record<string, string>> = {
  'kong.client.get_credential': 'plugin.StepCredential',
  'kong.client.load_consumer': 'plugin.StepConsumer',
  'kong.client.get_consumer': 'plugin.StepConsumer',
  'kong.client.authenticate': 'plugin.StepCredential',
  'kong.node.get_memory_stats': 'plugin.StepMemoryStats',
  'kong.router.get_route': 'plugin.StepRoute',
  'kong.router.get_service': 'plugin.StepService',
  'kong.request.get_query': 'plugin.StepMultiMap',
  'kong.request.get_headers': 'plugin.StepMultiMap',
  'kong.response.get_headers': 'plugin.StepMultiMap',
  'kong.service.response.get_headers': 'plugin.StepMultiMap',
};

interface StepIn {
  readonly EventId: number;
  readonly Data: 'ret' | { readonly Method: string; readonly Args?: unknown[] };
}

/**
 * Kong's bridge_loop for one phase: plugin.HandleEvent, then every PDK call the plugin makes is answered by
 * `answer` and sent back with plugin.Step*, until the server says "ret". Returns the PDK methods called.
 */
export async function runPhase(
  rpc: KongRpcClient,
  instanceId: number,
  phase: string,
  answer: (method: string, args: readonly unknown[]) => PdkAnswer,
): Promise<string[]> {
  const calls: string[] = [];
  let stepIn = (await rpc.call('plugin.HandleEvent', { InstanceId: instanceId, EventName: phase })) as StepIn;
  const eventId = stepIn.EventId;
  while (stepIn.Data !== 'ret') {
    const { Method, Args } = stepIn.Data;
    calls.push(Method);
    const answered = answer(Method, Args ?? []);
    const method = 'error' in answered ? 'plugin.StepError' : (STEP_METHOD_BY_PDK_METHOD[Method] ?? 'plugin.Step');
    const data = 'error' in answered ? answered.error : answered.result;
    // Lua drops a nil Data field from the table it packs: send no Data at all, as Kong does.
    stepIn = (await rpc.call(method, data === undefined ? { EventId: eventId } : { EventId: eventId, Data: data })) as StepIn;
  }
  return calls;
}
