// The Kong side of the scenario runs: the REAL kong-js-pluginserver (npm kong-pdk) loading the shipped
// kong/plugins/keypool.cjs, whose runtime (src/runtime.ts, built into a temp tree) opens lazily on the first request
// and shares this process's embedded store. Kong's part is played over the MessagePack-RPC socket
// (test/helpers/kong-rpc.ts, test/kong/kong-request.ts): access, then the bundled Lua guard (kong/guard.lua under
// luajit) decides what the client gets, then log with the upstream's answer, as Kong runs them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DECISION_KEY } from '../../src/adapters/kong/codec.js';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { KongRpcClient, runPhase, startInstance, startPluginServer, type PluginServer } from '../helpers/kong-rpc.js';
import { KongRequest } from '../kong/kong-request.js';
import { buildPluginTree, type PluginTree } from '../kong/plugin-tree.js';
import { runGuard } from './guard.js';
import type { Exchange, GatewayDriver, HeldExchange } from './run.js';
import type { RequestSpec, UpstreamReply } from './table.js';

/** A provider slug with no pool: a known key gets unknown_provider there, an unknown one invalid_api_key. */
const PROBE_PROVIDER = 'scenario-probe';

/** The plugin server's runtime configuration (its environment: Kong starts it with the node's environment). */
function pluginServerRuntimeEnv(dataDir: string): NodeJS.ProcessEnv {
  return {
    KEYPOOL_DATA_DIR: dataDir,
    DATABASE_URL: '',
    REDIS_URL: '',
    KEYPOOL_ENCRYPTION_KEYS: '',
    KEYPOOL_KEY_PEPPER: '',
    KEYPOOL_DEMO_SEED: 'false',
    // The safety-net reload at its minimum: config written by this process is seen within half a second even if
    // no change notification reaches the plugin server.
    KEYPOOL_RELOAD_INTERVAL_MS: '500',
    KEYPOOL_FLUSH_INTERVAL_MS: '100',
    LOG_LEVEL: 'warn',
  };
}

export class KongDriver implements GatewayDriver {
  readonly name = 'kong';
  private readonly instances = new Map<string, Promise<number>>();

  constructor(
    private readonly rpc: KongRpcClient,
    private readonly server: PluginServer,
  ) {}

  /** Polls with the marker key until the plugin server's snapshot knows it (it was issued after the scenario's setup). */
  async sync(marker: string): Promise<void> {
    const deadline = Date.now() + 20_000; // the first call also opens the plugin server's runtime
    let last: unknown;
    for (;;) {
      const kong = new KongRequest({ authorization: `Bearer ${marker}` }, '127.0.0.1');
      await runPhase(this.rpc, await this.instance(PROBE_PROVIDER), 'access', kong.answer);
      last = kong.shared.get(DECISION_KEY);
      if ((last as { code?: string } | undefined)?.code === 'unknown_provider') return;
      if (Date.now() > deadline) {
        throw new Error(`plugin server never saw the scenario's config: last decision ${JSON.stringify(last)}\n${this.server.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async send(request: RequestSpec, clientHeaders: Readonly<Record<string, string>>, reply: UpstreamReply): Promise<Exchange> {
    const { kong, instance, exchange } = await this.access(request, clientHeaders);
    if (exchange.upstreamRequest === null) {
      await this.log(instance, kong, { status: exchange.status, headers: exchange.headers ?? {}, source: 'exit' });
      return exchange;
    }
    await this.log(instance, kong, { status: reply.status, headers: reply.headers, source: 'service' });
    return { ...exchange, status: reply.status, body: reply.body };
  }

  async hold(request: RequestSpec, clientHeaders: Readonly<Record<string, string>>, reply: UpstreamReply): Promise<HeldExchange> {
    const { kong, instance, exchange } = await this.access(request, clientHeaders);
    // In flight, whether the upstream has sent nothing yet or its headers and part of a streamed body: Kong runs
    // the log phase only once the whole response has gone to the client.
    return {
      release: async () => {
        if (exchange.upstreamRequest === null) {
          await this.log(instance, kong, { status: exchange.status, headers: exchange.headers ?? {}, source: 'exit' });
          return exchange;
        }
        await this.log(instance, kong, { status: reply.status, headers: reply.headers, source: 'service' });
        return { ...exchange, status: reply.status, body: reply.body };
      },
    };
  }

  /**
   * The access phase, then the guard: a denial is the guard's kong.response.exit; an allow passes and the upstream
   * receives the headers keypool left (status and body are filled in from the upstream's answer by the caller).
   */
  private async access(
    request: RequestSpec,
    clientHeaders: Readonly<Record<string, string>>,
  ): Promise<{ kong: KongRequest; instance: number; exchange: Exchange }> {
    const instance = await this.instance(request.provider);
    const kong = new KongRequest({ 'content-type': 'application/json', host: 'gateway.test', ...clientHeaders }, request.clientAddress);
    await runPhase(this.rpc, instance, 'access', kong.answer);
    if (kong.unknownMethods.length > 0) throw new Error(`plugin called PDK methods Kong lacks: ${kong.unknownMethods.join(', ')}`);
    const guard = runGuard(kong.shared.get(DECISION_KEY));
    if (guard.exited) {
      return { kong, instance, exchange: { status: guard.status, body: guard.body, headers: guard.headers, upstreamRequest: null } };
    }
    const upstreamRequest = Object.fromEntries([...kong.headers].map(([name, values]) => [name, values.length === 1 ? values[0] : [...values]]));
    return { kong, instance, exchange: { status: 0, body: '', headers: null, upstreamRequest } };
  }

  private async log(instance: number, kong: KongRequest, upstream: KongRequest['upstream']): Promise<void> {
    kong.upstream = upstream;
    await runPhase(this.rpc, instance, 'log', kong.answer);
  }

  /** One plugin instance per provider, configured as kong.yml configures a route (Kong's extra fields included). */
  private instance(provider: string): Promise<number> {
    let id = this.instances.get(provider);
    if (!id) {
      id = startInstance(this.rpc, 'keypool', { provider, strategy: null, key_headers: null }).then((status) => status.Id);
      this.instances.set(provider, id);
    }
    return id;
  }
}

export interface KongStack {
  readonly driver: KongDriver;
  /** The runtime in this process that owns the store; scenarios are written through its repository. */
  readonly runtime: Runtime;
  stop(): Promise<void>;
}

/**
 * The real plugin server on a temp plugin tree, its runtime a client of the embedded store in `dataDir`, which a
 * runtime in this process must own (and share) already: pass `owner` (e.g. the Envoy stack's keypool), or leave
 * it out to open one here.
 */
export async function startKongStack(options: { readonly dataDir?: string; readonly owner?: Runtime } = {}): Promise<KongStack> {
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'kp-scenarios-kong-'));
  let runtime: Runtime | undefined = options.owner;
  let tree: PluginTree | undefined;
  let server: PluginServer | undefined;
  let rpc: KongRpcClient | undefined;
  const stop = async (): Promise<void> => {
    rpc?.close();
    await server?.stop();
    await tree?.remove();
    if (!options.owner) await runtime?.stop();
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    runtime ??= await openRuntime({
      storeRole: 'owner',
      config: { dataDir, demoSeed: false, flushIntervalMs: 100, logLevel: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' },
    });
    tree = await buildPluginTree('real');
    server = await startPluginServer({ pluginsDir: tree.pluginsDir, prefix: tree.prefix, env: pluginServerRuntimeEnv(dataDir) });
    rpc = new KongRpcClient(server.socketPath);
    return { driver: new KongDriver(rpc, server), runtime, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
