// The authenticated ext_proc channel through the REAL Envoy: envoy/envoy-mtls.yaml (mutual TLS) and envoy/envoy.yaml
// with the README's token snippet, against keypool's real ext_proc server (the real engine over a static snapshot) and a mock provider.
// Envoy fails closed whenever the channel does not authenticate: 5xx to the client, nothing upstream, no decision.
// Certificates are generated at test time (test/helpers/tls.ts). Skips without an Envoy binary unless
// KEYPOOL_REQUIRE_ENVOY=1.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openChannelSecurity, type ChannelSecurityConfig } from '../../src/adapters/envoy/channel-security.js';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import {
  REPO_ROOT,
  clusterHealthFlags,
  envoyOrSkip,
  renderEnvoyConfig,
  startEnvoy,
  validateEnvoyConfig,
  type RunningEnvoy,
} from '../helpers/envoy.js';
import { createTestPki, type TestCert, type TestPki } from '../helpers/tls.js';
import { waitForAsync } from './ext-proc-client.js';
import { createTestEngine, TEST_KEYS, type TestEngine } from '../helpers/test-engine.js';

const CLIENT_KEY = TEST_KEYS.live;
import { MockUpstream } from './mock-upstream.js';

const ENVOY = envoyOrSkip('test/envoy/envoy-channel.test.ts');
const logger = pino({ level: process.env['KEYPOOL_TEST_LOG'] ?? 'silent' });
const CHAT = '/openai/v1/chat/completions';
const TOKEN = 'envoy-channel-test-token-0123456789abcdef';
/** The shipped file's certificate paths, replaced by generated files in tests. */
const SHIPPED_PATHS = {
  clientCert: '/etc/keypool/tls/envoy-client.crt',
  clientKey: '/etc/keypool/tls/envoy-client.key',
  keypoolCa: '/etc/keypool/tls/keypool-ca.crt',
};

type Json = Record<string, unknown>;

interface Keypool {
  readonly engine: TestEngine;
  readonly server: ExtProcServer;
}

async function startKeypool(settings: Omit<ChannelSecurityConfig, 'listen'>): Promise<Keypool> {
  const engine = await createTestEngine();
  const channel = await openChannelSecurity({ listen: '127.0.0.1:0', ...settings });
  const server = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, healthPollMs: 50, channel });
  return { engine, server };
}

function withCertificates(config: string, client: TestCert, keypoolCaFile: string): string {
  return config
    .replaceAll(SHIPPED_PATHS.clientCert, client.certFile)
    .replaceAll(SHIPPED_PATHS.clientKey, client.keyFile)
    .replaceAll(SHIPPED_PATHS.keypoolCa, keypoolCaFile);
}

/**
 * The README's token snippet applied to a rendered envoy.yaml: the ext_proc filter's grpc_service and the keypool
 * cluster's gRPC health check both send `authorization: Bearer <token>`.
 */
function withToken(config: string, token: string): string {
  const doc = parse(config) as Json;
  const resources = doc['static_resources'] as { listeners: Json[]; clusters: Json[] };
  const text = JSON.stringify(resources.listeners);
  const listeners = JSON.parse(text) as unknown;
  visit(listeners, (node) => {
    const grpcService = node['grpc_service'] as Json | undefined;
    if (node['@type'] === 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor' && grpcService) {
      grpcService['initial_metadata'] = [{ key: 'authorization', value: `Bearer ${token}` }];
    }
  });
  resources.listeners = listeners as Json[];
  const keypool = resources.clusters.find((c) => c['name'] === 'keypool')!;
  for (const check of keypool['health_checks'] as Json[]) {
    (check['grpc_health_check'] as Json)['initial_metadata'] = [{ header: { key: 'authorization', value: `Bearer ${token}` } }];
  }
  return stringify(doc);
}

function visit(node: unknown, fn: (obj: Json) => void): void {
  if (Array.isArray(node)) for (const item of node) visit(item, fn);
  else if (node !== null && typeof node === 'object') {
    fn(node as Json);
    for (const value of Object.values(node as Json)) visit(value, fn);
  }
}

function post(envoy: RunningEnvoy): Promise<Response> {
  return fetch(`${envoy.baseUrl}${CHAT}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
    body: '{"model":"m"}',
  });
}

describe('envoy/envoy-mtls.yaml', () => {
  it('is envoy/envoy.yaml except for the keypool cluster\'s address and TLS (no drift between the two)', () => {
    const load = (file: string) => parse(readFileSync(join(REPO_ROOT, file), 'utf8')) as Json;
    const [plain, mtls] = [load('envoy/envoy.yaml'), load('envoy/envoy-mtls.yaml')];
    const keypoolOf = (doc: Json) => (doc['static_resources'] as { clusters: Json[] }).clusters.find((c) => c['name'] === 'keypool')!;
    const [plainKeypool, mtlsKeypool] = [keypoolOf(plain), keypoolOf(mtls)];
    expect(mtlsKeypool['transport_socket']).toMatchObject({ name: 'envoy.transport_sockets.tls' });
    for (const cluster of [plainKeypool, mtlsKeypool]) {
      for (const field of ['type', 'load_assignment', 'transport_socket']) delete cluster[field];
    }
    expect(mtls).toEqual(plain);
  });
});

describe.skipIf(!ENVOY)('the ext_proc channel through a real Envoy', () => {
  const upstream = new MockUpstream();
  let upstreamPort: number;
  let pki: TestPki;
  let keypoolCa: ReturnType<TestPki['ca']>;
  let envoyCa: ReturnType<TestPki['ca']>;
  let serverCert: TestCert;
  let envoyClient: TestCert;
  let strangerClient: TestCert;
  const running: Array<{ stop(): Promise<void> }> = [];

  beforeAll(async () => {
    upstreamPort = await upstream.start();
    pki = createTestPki();
    keypoolCa = pki.ca('keypool-ca');
    envoyCa = pki.ca('envoy-ca');
    serverCert = pki.leaf(keypoolCa, 'keypool', 'keypool.internal');
    envoyClient = pki.leaf(envoyCa, 'envoy-client');
    strangerClient = pki.leaf(pki.ca('stranger-ca'), 'stranger-client');
  });

  afterAll(async () => {
    for (const item of running.reverse()) await item.stop();
    await upstream.stop();
    pki?.remove();
  });

  async function envoyFor(config: string): Promise<RunningEnvoy> {
    const envoy = await startEnvoy({ bin: ENVOY as string, config });
    running.push(envoy);
    return envoy;
  }

  function rendered(file: string, keypool: Keypool): string {
    return renderEnvoyConfig(file, { keypoolPort: keypool.server.port, upstreams: { openai: upstreamPort, anthropic: upstreamPort }, healthCheckIntervalMs: 200 });
  }

  it('envoy/envoy-mtls.yaml passes envoy --mode validate once its certificate files exist', async () => {
    const file = join(pki.dir, 'envoy-mtls.yaml');
    const shipped = readFileSync(join(REPO_ROOT, 'envoy/envoy-mtls.yaml'), 'utf8');
    writeFileSync(file, withCertificates(shipped, envoyClient, keypoolCa.certFile));
    const result = await validateEnvoyConfig(ENVOY as string, file);
    expect(result.output).toContain('OK');
    expect(result.code).toBe(0);
    expect(result.output).not.toMatch(/deprecated/i);
  });

  describe('mTLS (envoy/envoy-mtls.yaml)', () => {
    let keypool: Keypool;
    beforeAll(async () => {
      keypool = await startKeypool({ tlsCertFile: serverCert.certFile, tlsKeyFile: serverCert.keyFile, tlsClientCaFile: envoyCa.certFile });
      running.push({ stop: () => keypool.server.shutdown() });
    });

    it("Envoy's client certificate: the request is decided and forwarded with the pooled key; health checks pass", async () => {
      const envoy = await envoyFor(withCertificates(rendered('envoy/envoy-mtls.yaml', keypool), envoyClient, keypoolCa.certFile));
      await waitForAsync(async () => (await clusterHealthFlags(envoy.adminUrl, 'keypool')).includes('healthy'), 10_000, 'keypool healthy over mTLS');
      upstream.reset();
      const res = await post(envoy);
      expect(res.status).toBe(200);
      await res.text();
      expect(upstream.received).toHaveLength(1);
      expect(upstream.received[0]!.headers['authorization']).toMatch(/^Bearer sk-openai-/);
      expect(keypool.engine.views).toHaveLength(1);
      await envoy.stop();
    });

    it('a client certificate from another CA: Envoy fails closed (5xx), nothing upstream, nothing decided', async () => {
      const envoy = await envoyFor(withCertificates(rendered('envoy/envoy-mtls.yaml', keypool), strangerClient, keypoolCa.certFile));
      upstream.reset();
      const before = keypool.engine.views.length;
      const res = await post(envoy);
      await res.text();
      expect(res.status).toBeGreaterThanOrEqual(500);
      expect(upstream.received).toHaveLength(0);
      expect(keypool.engine.views.length).toBe(before);
      expect(await clusterHealthFlags(envoy.adminUrl, 'keypool')).not.toContain('healthy');
      await envoy.stop();
    });
  });

  describe('token (envoy/envoy.yaml + the README snippet)', () => {
    let keypool: Keypool;
    beforeAll(async () => {
      keypool = await startKeypool({ token: TOKEN });
      running.push({ stop: () => keypool.server.shutdown() });
    });

    it('with the token in initial_metadata: decided and forwarded; health checks pass', async () => {
      const envoy = await envoyFor(withToken(rendered('envoy/envoy.yaml', keypool), TOKEN));
      await waitForAsync(async () => (await clusterHealthFlags(envoy.adminUrl, 'keypool')).includes('healthy'), 10_000, 'keypool healthy with the token');
      upstream.reset();
      const res = await post(envoy);
      expect(res.status).toBe(200);
      await res.text();
      expect(upstream.received).toHaveLength(1);
      expect(upstream.received[0]!.headers['authorization']).toMatch(/^Bearer sk-openai-/);
      await envoy.stop();
    });

    it('without the token: Envoy fails closed (5xx), nothing upstream, nothing decided', async () => {
      const envoy = await envoyFor(rendered('envoy/envoy.yaml', keypool));
      upstream.reset();
      const before = keypool.engine.views.length;
      const res = await post(envoy);
      await res.text();
      expect(res.status).toBeGreaterThanOrEqual(500);
      expect(upstream.received).toHaveLength(0);
      expect(keypool.engine.views.length).toBe(before);
      await envoy.stop();
    });
  });
});
