// `keypool serve`: runs the service (adapters, admin API) until SIGTERM or SIGINT, then stops it gracefully.
// The service modules are imported here, lazily, so every other command starts without loading servers.
import type { CommandSpec } from './args.js';
import type { Command } from './command.js';

const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'Run keypool (gateway adapters and admin API) until SIGTERM/SIGINT; SIGHUP reloads the gRPC TLS certificates.',
  details: [
    'Configured by environment: DATABASE_URL (unset = embedded store in KEYPOOL_DATA_DIR), REDIS_URL,',
    'KEYPOOL_GRPC_LISTEN (default 127.0.0.1:50051; elsewhere needs KEYPOOL_GRPC_TLS_CERT and KEYPOOL_GRPC_TLS_KEY',
    'plus KEYPOOL_GRPC_TLS_CLIENT_CA or KEYPOOL_GRPC_TOKEN), KEYPOOL_ADMIN_LISTEN, KEYPOOL_ADMIN_TOKEN,',
    'KEYPOOL_ENCRYPTION_KEYS, KEYPOOL_KEY_PEPPER, LOG_LEVEL.',
    'On the embedded store, other `keypool` commands keep working from a second terminal while this runs.',
  ].join('\n'),
};

export const serveCommand: Command = {
  spec: serveSpec,
  async run() {
    const { startKeypool } = await import('../main.js');
    const service = await startKeypool();
    return new Promise<number>((resolve) => {
      let stopping = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (stopping) {
          // A second signal while draining: stop waiting.
          process.exit(signal === 'SIGINT' ? 130 : 143);
        }
        stopping = true;
        service.stop().then(
          () => resolve(0),
          (error: unknown) => {
            process.stderr.write(`keypool: error while stopping: ${error instanceof Error ? error.message : String(error)}\n`);
            resolve(1);
          },
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      // Certificate rotation without a restart; a failed reload keeps the current certificates (logged).
      process.on('SIGHUP', () => {
        service.reloadCertificates().catch((error: unknown) => {
          service.runtime.logger.error({ err: error }, 'reloading the ext_proc TLS certificates failed; keeping the current ones');
        });
      });
    });
  },
};
