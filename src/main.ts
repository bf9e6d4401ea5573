// Composition root of `keypool serve`: the runtime plus the gateway-facing servers.
import { openRuntime, type Runtime, type RuntimeOptions } from './runtime.js';
import { startExtProcServer, type ExtProcServer } from './adapters/envoy/server.js';
import { splitHostPort, type KeypoolConfig } from './config.js';

export interface RunningKeypool {
  readonly runtime: Runtime;
  /** host:port the ext_proc gRPC server is bound to (with the real port when 0 was asked for). */
  readonly grpcAddress: string;
  readonly engine: Runtime['engine'];
  stop(): Promise<void>;
}

export async function startKeypool(
  overrides: Partial<KeypoolConfig> = {},
  options: Omit<RuntimeOptions, 'config' | 'storeRole'> = {},
): Promise<RunningKeypool> {
  const runtime = await openRuntime({ ...options, config: overrides, storeRole: 'owner' });
  const { config, logger } = runtime;
  let extProc: ExtProcServer | undefined;
  try {
    extProc = await startExtProcServer({
      listen: config.grpcListen,
      engine: runtime.engine,
      logger,
      drainTimeoutMs: config.drainTimeoutMs,
    });
  } catch (error) {
    await runtime.stop();
    throw error;
  }
  const grpcAddress = `${splitHostPort(config.grpcListen).host}:${extProc.port}`;
  logger.info({ grpc: grpcAddress, store: runtime.store.where }, 'keypool is serving');
  process.stdout.write(`keypool: ext_proc gRPC listening on ${grpcAddress}; config store: ${runtime.store.where}\n`);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      logger.info('draining');
      await extProc.shutdown();
      await runtime.stop();
      logger.info('stopped');
    })();
    return stopping;
  };
  return { runtime, grpcAddress, engine: runtime.engine, stop };
}
