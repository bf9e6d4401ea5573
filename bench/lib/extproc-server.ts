// A bench child: an ext_proc gRPC server on 127.0.0.1, either keypool itself or a null processor.
//   node extproc-server.js keypool [redis://...|-] [quotas]
//                                                  keypool via startKeypool (DATABASE_URL=memory://, in-memory rate
//                                                  state unless a Redis URL is given), seeded through its repository;
//                                                  `quotas`: the key, its tenant and the accounts carry rpm/rpd limits
//                                                  and the key maps to P7 (reserve 25 %), all far above the load, so
//                                                  every request is still admitted but pays for every check
//   node extproc-server.js null                    grpc-js, same protos and loader options, answers CONTINUE to
//                                                  request_headers and response_headers and does nothing else
// Announces { port, clientKey } to the parent (bench/lib/procs.ts) and stops on request.
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadProtos } from '../../src/adapters/envoy/protos.js';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from '../../src/adapters/envoy/messages.js';
import { startKeypool } from '../../src/main.js';
import { CLIENT_KEY_PREFIX } from '../../src/secrets/client-key.js';
import { serveParent } from './child.js';

const ACTOR = 'bench';
/** Pooled accounts of the `openai` provider. */
const ACCOUNTS = Number(process.env['BENCH_ACCOUNTS'] ?? 2);

/**
 * Limits of the `quotas` mode: far above any load this bench produces (2 M requests per sliding minute is 33k req/s),
 * so nothing is refused, but every decision checks and charges the key's and the tenant's minute and day windows,
 * the account's rpm window and the P7 reserve, as a governed deployment does.
 */
const QUOTA_RPM = 2_000_000;
const QUOTA_RPD = 2_000_000_000;

async function startKeypoolServer(redisUrl: string | undefined, quotas: boolean): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keypool-bench-'));
  const keypool = await startKeypool({
    databaseUrl: 'memory://',
    redisUrl,
    dataDir,
    grpcListen: '127.0.0.1:0',
    // Free ports: several keypools run side by side here, and a developer's keypool may hold the default 9901.
    adminListen: '127.0.0.1:0',
    demoSeed: false,
    // Production's default level: nothing is logged per allowed request.
    logLevel: process.env['BENCH_LOG_LEVEL'] ?? 'info',
  });
  const repo = keypool.runtime.repository;
  // Priority mappings on, every key mapped (the matcher runs on every decision), an allowlist on the key (the CIDR
  // check runs too), and a pool of accounts with no limits (every request is admitted).
  await repo.settings.set('enabled', true, ACTOR);
  if (quotas) await repo.tenants.create({ id: 'acme', name: 'Acme', rpmLimit: QUOTA_RPM, rpdLimit: QUOTA_RPD }, ACTOR);
  const priority = quotas ? 7 : 3;
  await repo.mappings.create({ pattern: CLIENT_KEY_PREFIX, matchType: 'prefix', priority, tenantId: 'acme', tenantName: 'Acme' }, ACTOR);
  for (let i = 0; i < ACCOUNTS; i++) {
    const limits = quotas ? { rpmLimit: QUOTA_RPM } : {};
    await repo.accounts.create({ providerSlug: 'openai', name: `bench-${i}`, apiKey: `sk-bench-${i}-${'x'.repeat(40)}`, ...limits }, ACTOR);
  }
  const keyLimits = quotas ? { tenantId: 'acme', rpmLimit: QUOTA_RPM, rpdLimit: QUOTA_RPD } : {};
  const issued = await repo.keys.create({ name: 'bench', allowedIps: ['127.0.0.0/8', '10.0.0.0/8'], ...keyLimits }, ACTOR);
  await keypool.runtime.snapshots.reload('manual');
  const port = Number(keypool.grpcAddress.slice(keypool.grpcAddress.lastIndexOf(':') + 1));
  serveParent(
    { port, clientKey: issued.plaintextKey, mode: `${redisUrl ? 'keypool-redis' : 'keypool'}${quotas ? '-quotas' : ''}` },
    { memory: () => ({ ...process.memoryUsage() }) },
    async () => {
      await keypool.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  );
}

async function startNullServer(): Promise<void> {
  const { extProcService } = loadProtos();
  const server = new grpc.Server();
  server.addService(extProcService, {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>) => {
      call.on('data', (msg: ProcessingRequestMsg) => {
        call.write(msg.request === 'request_headers' ? { request_headers: {} } : { response_headers: {} });
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  serveParent({ port, clientKey: `${CLIENT_KEY_PREFIX}${'n'.repeat(40)}`, mode: 'null' }, { memory: () => ({ ...process.memoryUsage() }) }, async () => {
    server.forceShutdown();
  });
}

const [mode, redisUrl, variant] = process.argv.slice(2);
if (variant !== undefined && variant !== 'quotas') throw new Error(`unknown variant ${variant} (expected: quotas)`);
if (mode === 'keypool') await startKeypoolServer(redisUrl && redisUrl !== '-' ? redisUrl : undefined, variant === 'quotas');
else if (mode === 'null') await startNullServer();
else throw new Error(`usage: extproc-server.js keypool [redis-url|-] [quotas] | null (got ${mode})`);
