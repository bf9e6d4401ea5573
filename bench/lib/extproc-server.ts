// A bench child: an ext_proc gRPC server on 127.0.0.1, either keypool itself or a null processor.
//   node extproc-server.js keypool [redis://...]  keypool via startKeypool (DATABASE_URL=memory://, in-memory rate
//                                                  state unless a Redis URL is given), seeded through its repository
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

async function startKeypoolServer(redisUrl: string | undefined): Promise<void> {
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
  await repo.mappings.create({ pattern: CLIENT_KEY_PREFIX, matchType: 'prefix', priority: 3, tenantId: 'acme', tenantName: 'Acme' }, ACTOR);
  for (let i = 0; i < ACCOUNTS; i++) {
    await repo.accounts.create({ providerSlug: 'openai', name: `bench-${i}`, apiKey: `sk-bench-${i}-${'x'.repeat(40)}` }, ACTOR);
  }
  const issued = await repo.keys.create({ name: 'bench', allowedIps: ['127.0.0.0/8', '10.0.0.0/8'] }, ACTOR);
  await keypool.runtime.snapshots.reload('manual');
  const port = Number(keypool.grpcAddress.slice(keypool.grpcAddress.lastIndexOf(':') + 1));
  serveParent(
    { port, clientKey: issued.plaintextKey, mode: redisUrl ? 'keypool-redis' : 'keypool' },
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

const [mode, redisUrl] = process.argv.slice(2);
if (mode === 'keypool') await startKeypoolServer(redisUrl || undefined);
else if (mode === 'null') await startNullServer();
else throw new Error(`usage: extproc-server.js keypool [redis-url] | null (got ${mode})`);
