// The gRPC server Envoy's ext_proc filter talks to: envoy.service.ext_proc.v3.ExternalProcessor
// (one bidi stream per proxied HTTP request) plus grpc.health.v1.Health for Envoy's health checker, on keypool's own
// minimal gRPC transport (grpc-server.ts; why not grpc-js: see there and README "Performance").
import type { Logger } from 'pino';
import { GrpcServer, type GrpcServerCall } from './grpc-server.js';
import type { DecisionEngine } from '../../ports.js';
import type { ChannelSecurity } from './channel-security.js';
import { loadProtos, EXT_PROC_SERVICE } from './protos.js';
import { ProcessStream, type ProcessStreamDeps } from './stream.js';
import { HealthService } from './health.js';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from './messages.js';
import { DEFAULT_RETRY_CONTEXT, RetryContexts, type RetryContextOptions } from './retry-context.js';
import { USAGE_OBSERVER_METADATA_KEY, USAGE_OBSERVER_VALUE, UsageObserverStream } from './usage-observer.js';
import { UsageTickets } from './usage-tickets.js';

/**
 * Largest ext_proc message keypool accepts. A request body Envoy buffers for keypool (pools that read the model or
 * count tokens) arrives as ONE message as large as the route's buffer limit: `envoy-failover.yaml` raises it to 8 MiB
 * so retries can replay bodies. gRPC's usual 4 MiB would refuse a 5 MiB body there (RESOURCE_EXHAUSTED: Envoy fails
 * the request closed, 500). Keep it above every request_body_buffer_limit on a keypool route.
 */
export const EXT_PROC_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export interface ExtProcServerOptions {
  /** host:port to bind, e.g. `127.0.0.1:50051`; port 0 asks the OS for a free one. */
  readonly listen: string;
  /**
   * TLS and client authentication (channel-security.ts): certificates (reloaded into the running listener), mTLS,
   * and the bearer token every call (Health included) must carry. Unset: plaintext without authentication, for a
   * loopback sidecar and tests.
   */
  readonly channel?: ChannelSecurity | undefined;
  readonly engine: DecisionEngine;
  readonly logger: Logger;
  /** gRPC metadata key carrying the route's provider (set per route via ExtProcPerRoute grpc_initial_metadata). */
  readonly providerMetadataKey?: string | undefined;
  /**
   * How long shutdown() lets open streams finish before ending them: a stream still deciding or waiting for the
   * response headers fails (Envoy answers that request 5xx); a stream holding a concurrency slot through a streamed
   * body ends cleanly, and that response continues to the client without keypool.
   */
  readonly drainTimeoutMs?: number | undefined;
  /** How often Health/Watch streams re-check engine.isReady(). */
  readonly healthPollMs?: number | undefined;
  /**
   * Upstream-filter failover (envoy/envoy-failover.yaml): remember each allowed request's client
   * credentials by x-request-id so Envoy's retry is decided on them (see retry-context.ts). Used only
   * by streams whose gRPC metadata carries `x-keypool-retry-context: enabled` (envoy-failover.yaml sets it per
   * provider cluster); other streams skip it. Available by default (bounded); false turns it off for all.
   */
  readonly retryContext?: Partial<RetryContextOptions> | false | undefined;
  /** Clock for the retry memory (tests). */
  readonly nowMs?: (() => number) | undefined;
}

export interface ExtProcServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** Operator switch: false forces NOT_SERVING; true = SERVING once engine.isReady() (and not draining). */
  setServing(serving: boolean): void;
  /** Graceful: NOT_SERVING, stop accepting, let open streams finish up to drainTimeoutMs, then end them (see there). */
  shutdown(): Promise<void>;
}

export const DEFAULT_PROVIDER_METADATA_KEY = 'x-keypool-provider';
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
const DEFAULT_HEALTH_POLL_MS = 1_000;
/** After the drain timeout: how long the streams' final statuses get to reach Envoy before connections are cut. */
const FINAL_STATUS_FLUSH_MS = 500;

export async function startExtProcServer(options: ExtProcServerOptions): Promise<ExtProcServer> {
  const protos = loadProtos();
  const logger = options.logger.child({ component: 'envoy-ext-proc' });
  const drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  const active = new Set<{ abort(reason: string): void }>();
  // Filled by every allowed request (bounded; see usage-tickets.ts), taken by the usage observer's streams.
  const usageTickets = new UsageTickets();
  const health = new HealthService({
    engine: options.engine,
    logger,
    serviceNames: ['', EXT_PROC_SERVICE],
    pollMs: options.healthPollMs ?? DEFAULT_HEALTH_POLL_MS,
  });
  const deps: ProcessStreamDeps = {
    engine: options.engine,
    logger,
    providerMetadataKey: (options.providerMetadataKey ?? DEFAULT_PROVIDER_METADATA_KEY).toLowerCase(),
    onClosed: (stream) => active.delete(stream),
    retries: options.retryContext === false ? null : new RetryContexts({ ...DEFAULT_RETRY_CONTEXT, ...options.retryContext }),
    nowMs: options.nowMs ?? Date.now,
    usageTickets,
  };

  const channel = options.channel;
  const server = new GrpcServer({
    maxMessageBytes: EXT_PROC_MAX_MESSAGE_BYTES,
    tls: channel?.tls() ?? undefined,
    authorize: channel?.tokenRequired ? (metadata) => channel.authorizes(metadata.get('authorization')) : undefined,
  });
  channel?.onCertificates((context) => server.setSecureContext(context));
  server.addService(protos.extProcServerService, {
    Process: (call: GrpcServerCall<ProcessingRequestMsg, ProcessingResponseMsg>) => {
      // The usage observer filter (envoy/envoy-usage.yaml) says who it is in its gRPC metadata.
      if (call.metadata.get(USAGE_OBSERVER_METADATA_KEY)[0] === USAGE_OBSERVER_VALUE) {
        usageTickets.observerConnected();
        const observer = new UsageObserverStream(call, { ...deps, tickets: usageTickets, onClosed: (stream) => active.delete(stream) });
        active.add(observer);
        observer.start();
        return;
      }
      const stream = new ProcessStream(call, deps);
      active.add(stream);
      stream.start();
    },
  });
  server.addService(protos.healthService, health.handlers());

  const port = await server.listen(options.listen);
  logger.info({ listen: options.listen, port }, 'ext_proc gRPC server listening');

  let shuttingDown: Promise<void> | null = null;
  const shutdown = (): Promise<void> => {
    shuttingDown ??= drain();
    return shuttingDown;
  };

  async function drain(): Promise<void> {
    health.startDraining();
    logger.info({ openStreams: active.size, drainTimeoutMs }, 'ext_proc draining');
    const graceful = new Promise<boolean>((resolve) => server.tryShutdown(() => resolve(true)));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), drainTimeoutMs);
    });
    const finished = await Promise.race([graceful, timedOut]);
    clearTimeout(timer);
    if (!finished) {
      logger.warn({ openStreams: active.size }, 'ext_proc drain timed out; ending open streams');
      for (const stream of [...active]) stream.abort('server shutdown');
      // Every stream now has its final status; let those frames go out before cutting the connections, or Envoy
      // would see resets instead of the clean ends that let streamed responses finish (bounded wait).
      await Promise.race([graceful, new Promise((resolve) => setTimeout(resolve, FINAL_STATUS_FLUSH_MS).unref())]);
      server.forceShutdown();
    }
    health.stop();
    logger.info('ext_proc stopped');
  }

  return {
    port,
    setServing: (serving) => health.setServing(serving),
    shutdown,
  };
}
