// The Envoy side of the scenario runs: the REAL Envoy binary with the shipped envoy/envoy.yaml (ports rewritten by
// test/helpers/envoy.ts, listening on 127.0.0.1 and ::1) in front of keypool's ext_proc server (`startKeypool`, in
// this process) and a scenario-controlled provider. A request's client address is the listener it is sent to.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKeypool, type RunningKeypool } from '../../src/main.js';
import { renderEnvoyConfig, startEnvoy, type RunningEnvoy } from '../helpers/envoy.js';
import type { Exchange, GatewayDriver, HeldExchange } from './run.js';
import type { RequestSpec, UpstreamReply } from './table.js';
import { ScenarioUpstream } from './upstream.js';

/** Routes of the shipped envoy.yaml, one per provider. */
const PATHS: Readonly<Record<RequestSpec['provider'], string>> = {
  openai: '/openai/v1/chat/completions',
  anthropic: '/anthropic/v1/messages',
};

/** Response headers Envoy adds on its own; everything else on a local reply is keypool's. */
const GATEWAY_HEADERS: ReadonlySet<string> = new Set(['date', 'server', 'content-length', 'connection', 'keep-alive', 'transfer-encoding']);

export class EnvoyDriver implements GatewayDriver {
  readonly name = 'envoy';

  constructor(
    private readonly envoy: RunningEnvoy,
    private readonly upstream: ScenarioUpstream,
    private readonly keypool: RunningKeypool,
  ) {}

  async sync(): Promise<void> {
    // keypool runs in this process on the store the scenario was written to: reload now rather than on the feed.
    await this.keypool.runtime.snapshots.reload('manual');
  }

  async send(request: RequestSpec, clientHeaders: Readonly<Record<string, string>>, reply: UpstreamReply): Promise<Exchange> {
    const reachedAt = this.upstream.received.length;
    this.upstream.answer = () => reply;
    const response = await this.post(request, clientHeaders);
    return this.exchange(response, await response.text(), reachedAt);
  }

  async hold(
    request: RequestSpec,
    clientHeaders: Readonly<Record<string, string>>,
    reply: UpstreamReply,
    mode: 'held' | 'streaming',
  ): Promise<HeldExchange> {
    const reachedAt = this.upstream.received.length;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    this.upstream.answer = mode === 'held' ? () => gate.then(() => reply) : () => ({ reply, bodyAfter: gate });
    let answered = false;
    const response = this.post(request, clientHeaders).finally(() => (answered = true));
    response.catch(() => undefined);
    if (mode === 'streaming') {
      // The client has the status and headers; the body is still open.
      const streaming = await response;
      return {
        release: async () => {
          open();
          return this.exchange(streaming, await streaming.text(), reachedAt);
        },
      };
    }
    // Decided: either it reached the upstream (allowed, now in flight) or Envoy answered it (denied).
    const deadline = Date.now() + 5_000;
    while (this.upstream.received.length === reachedAt && !answered) {
      if (Date.now() > deadline) throw new Error('held request neither reached the upstream nor was answered');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return {
      release: async () => {
        open();
        const finished = await response;
        return this.exchange(finished, await finished.text(), reachedAt);
      },
    };
  }

  private post(request: RequestSpec, clientHeaders: Readonly<Record<string, string>>): Promise<Response> {
    const listener = this.envoy.listeners.find((candidate) => candidate.address === request.clientAddress);
    if (!listener) throw new Error(`no Envoy listener on ${request.clientAddress}`);
    return fetch(`${listener.baseUrl}${PATHS[request.provider]}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...clientHeaders },
      body: '{"model":"m","messages":[]}',
    });
  }

  private exchange(response: Response, body: string, reachedAt: number): Exchange {
    const upstreamRequest = this.upstream.received[reachedAt]?.headers ?? null;
    const headers: Record<string, string> = {};
    for (const [name, value] of response.headers) if (!GATEWAY_HEADERS.has(name)) headers[name] = value;
    return { status: response.status, body, headers: upstreamRequest === null ? headers : null, upstreamRequest };
  }
}

export interface EnvoyStack {
  readonly driver: EnvoyDriver;
  readonly keypool: RunningKeypool;
  /** The embedded store's data directory (another process can share it while keypool runs). */
  readonly dataDir: string;
  stop(): Promise<void>;
}

/**
 * keypool (`startKeypool`: embedded PGlite in a temp data dir, owned and shared by this process; in-memory rate
 * state), the scenario provider, and the real Envoy between the client and both.
 */
export async function startEnvoyStack(envoyBin: string): Promise<EnvoyStack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kp-scenarios-envoy-'));
  const upstream = new ScenarioUpstream();
  let keypool: RunningKeypool | undefined;
  let envoy: RunningEnvoy | undefined;
  const stop = async (): Promise<void> => {
    await envoy?.stop();
    await keypool?.stop();
    await upstream.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const upstreamPort = await upstream.start();
    keypool = await startKeypool(
      {
        dataDir,
        grpcListen: '127.0.0.1:0',
        adminListen: '127.0.0.1:0',
        demoSeed: false,
        // Observations (an account invalidated by a 401) reach the store quickly.
        flushIntervalMs: 100,
        logLevel: process.env['KEYPOOL_TEST_LOG'] ?? 'silent',
      },
    );
    const grpcPort = Number(keypool.grpcAddress.slice(keypool.grpcAddress.lastIndexOf(':') + 1));
    envoy = await startEnvoy({
      bin: envoyBin,
      config: renderEnvoyConfig('envoy/envoy.yaml', {
        keypoolPort: grpcPort,
        upstreams: { openai: upstreamPort, anthropic: upstreamPort },
        listenAddresses: ['127.0.0.1', '::1'],
      }),
    });
    return { driver: new EnvoyDriver(envoy, upstream, keypool), keypool, dataDir, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
