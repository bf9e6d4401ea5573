// Composition root of `keypool serve`: the runtime plus the gateway-facing servers and the admin API.
import { openRuntime, type Runtime, type RuntimeOptions } from './runtime.js';
import { startExtProcServer, type ExtProcServer } from './adapters/envoy/server.js';
import { openChannelSecurity } from './adapters/envoy/channel-security.js';
import { startAdminServer, type AdminServer } from './admin/server.js';
import { createAdminDeps } from './admin/deps.js';
import { KeypoolMetrics } from './admin/metrics.js';
import { DecisionActivity } from './admin/activity.js';
import { systemClock } from './ports.js';
import { loadConfig, splitHostPort, type KeypoolConfig } from './config.js';

export interface RunningKeypool {
  readonly runtime: Runtime;
  /** host:port the ext_proc gRPC server is bound to (with the real port when 0 was asked for). */
  readonly grpcAddress: string;
  /** host:port of the admin API and /metrics. */
  readonly adminAddress: string;
  readonly engine: Runtime['engine'];
  readonly metrics: KeypoolMetrics;
  /** Re-reads the ext_proc TLS certificate files (SIGHUP); on failure the current ones stay and it rejects. */
  reloadCertificates(): Promise<void>;
  stop(): Promise<void>;
}

export async function startKeypool(
  overrides: Partial<KeypoolConfig> = {},
  options: Omit<RuntimeOptions, 'config' | 'storeRole' | 'onDecision' | 'onObservation' | 'onQueue' | 'onAdmission' | 'onTokens'> = {},
): Promise<RunningKeypool> {
  // The ext_proc channel's security is checked (and its certificates read) before anything opens: a listener that
  // would hand pooled keys to anyone on the network never starts.
  const config = loadConfig(overrides);
  const channel = await openChannelSecurity({
    listen: config.grpcListen,
    tlsCertFile: config.grpcTlsCertFile,
    tlsKeyFile: config.grpcTlsKeyFile,
    tlsClientCaFile: config.grpcTlsClientCaFile,
    token: config.grpcToken,
  });
  const metrics = new KeypoolMetrics();
  // The runtime's clock (openRuntime uses the same default).
  const activity = new DecisionActivity(options.clock ?? systemClock);
  const runtime = await openRuntime({
    ...options,
    config,
    storeRole: 'owner',
    onDecision: (outcome, elapsedMs, provider) => {
      metrics.onDecision(outcome, elapsedMs);
      activity.onDecision(outcome, provider);
    },
    onAdmission: metrics.onAdmission,
    onObservation: (ticket, outcome) => {
      metrics.onObservation(ticket.pool, ticket.accountName, outcome);
      activity.onObservation(ticket.accountId, outcome);
    },
    onQueue: { onEnter: metrics.onQueueEnter, onLeave: metrics.onQueueLeave },
    onTokens: metrics.onTokens,
  });
  const { logger } = runtime;
  let extProc: ExtProcServer | undefined;
  let admin: AdminServer | undefined;
  try {
    metrics.attach({
      snapshots: runtime.snapshots,
      state: runtime.state,
      clock: runtime.clock,
      writes: runtime.writes,
      engine: runtime.engine,
      // state_store: the opossum breaker around Redis; database: open while buffered writes cannot be flushed.
      breakers: () => ({
        state_store: runtime.sharedState?.breakerState ?? 'closed',
        database: runtime.writes.databaseReachable ? 'closed' : 'open',
      }),
    });
    admin = await startAdminServer({
      listen: config.adminListen,
      token: config.adminToken,
      tokenName: config.adminTokenName,
      metricsAccess: config.metricsAccess,
      allowedHosts: config.adminAllowedHosts,
      logger,
      deps: createAdminDeps({
        sql: runtime.store.client,
        keyring: runtime.secrets.keyring,
        pepper: runtime.secrets.pepper,
        snapshots: runtime.snapshots,
        state: runtime.state,
        engine: runtime.engine,
        clock: runtime.clock,
        metrics,
        repository: runtime.repository,
        healthCheck: { baseUrls: config.healthCheckBaseUrls, timeoutMs: config.healthCheckTimeoutMs },
        autoRevokeOverdue: config.autoRevokeOverdue,
        quotaReprobeMs: config.quotaReprobeMs,
        activity,
        quotaTimeZone: config.quotaTimeZone,
      }),
    });
    extProc = await startExtProcServer({
      listen: config.grpcListen,
      channel,
      engine: runtime.engine,
      logger,
      drainTimeoutMs: config.drainTimeoutMs,
    });
  } catch (error) {
    await admin?.close();
    await runtime.stop();
    throw error;
  }
  const grpcAddress = `${splitHostPort(config.grpcListen).host}:${extProc.port}`;
  const adminAddress = `${splitHostPort(config.adminListen).host}:${admin.port}`;
  logger.info({ grpc: grpcAddress, grpcChannel: channel.mode, admin: adminAddress, store: runtime.store.where }, 'keypool is serving');
  process.stdout.write(
    `keypool: ext_proc gRPC on ${grpcAddress}; channel ${channel.mode}; admin API and /metrics on http://${adminAddress}; config store: ${runtime.store.where}\n`,
  );

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      logger.info('draining');
      await extProc.shutdown();
      await admin.close();
      await runtime.stop();
      logger.info('stopped');
    })();
    return stopping;
  };
  const reloadCertificates = async () => {
    await channel.reload();
    logger.info({ grpcChannel: channel.mode }, 'ext_proc TLS certificates reloaded');
  };
  return { runtime, grpcAddress, adminAddress, engine: runtime.engine, metrics, reloadCertificates, stop };
}
