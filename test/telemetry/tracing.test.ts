// OpenTelemetry traces: which OTEL_* settings turn them on (table), that no module but src/telemetry/otel.ts touches
// the SDK (so tracing off loads none of it), and real `keypool serve` processes exporting to an in-process OTLP/HTTP
// receiver (node:http): a span per decision parented on the request's traceparent, a span per observation under it,
// the attributes (never a key), trace ids in log lines; http/json decoded, the default http/protobuf checked on the wire.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { describePostgres } from '../helpers/db.js';
import { startReplicas, stopAll, type Replica } from '../helpers/replica.js';
import { requestHeadersMsg, responseHeadersMsg, setHeadersOf } from '../envoy/ext-proc-client.js';
import { Deployment, type PooledAccount } from '../replicas/deployment.js';
import { sleep } from '../replicas/traffic.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('tracing settings (OTEL_* environment)', () => {
  const cases: Array<[Record<string, string>, ReturnType<typeof loadConfig>['tracing']]> = [
    [{}, null],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, { protocol: 'http/protobuf', serviceName: 'keypool' }],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, { protocol: 'http/json', serviceName: 'keypool' }],
    [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SERVICE_NAME: 'gw-keypool' }, { protocol: 'http/protobuf', serviceName: 'gw-keypool' }],
    [{ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, null],
    [{ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }, null],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }, { protocol: 'http/json', serviceName: 'keypool' }],
  ];
  it.each(cases)('%j', (env, expected) => {
    expect(loadConfig({}, env).tracing).toEqual(expected);
  });

  it('refuses what it cannot export, naming the variable', () => {
    expect(() => loadConfig({}, { OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow(ConfigError);
    expect(() => loadConfig({}, { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(/^OTEL_EXPORTER_OTLP_PROTOCOL: /);
  });

  it('no module but src/telemetry/otel.ts imports @opentelemetry, and only tracing.ts loads it (dynamically)', () => {
    const files = listTs(join(ROOT, 'src'));
    const importers = files.filter((file) => /from '@opentelemetry\/|import\('@opentelemetry\//.test(readFileSync(file, 'utf8')));
    expect(importers.map((file) => file.slice(ROOT.length + 1))).toEqual(['src/telemetry/otel.ts']);
    const loaders = files.filter((file) => /['"]\.{1,2}\/(?:telemetry\/)?otel\.js['"]/.test(readFileSync(file, 'utf8')));
    expect(loaders.map((file) => file.slice(ROOT.length + 1))).toEqual(['src/telemetry/tracing.ts']);
    expect(readFileSync(join(ROOT, 'src/telemetry/tracing.ts'), 'utf8')).toMatch(/await import\('\.\/otel\.js'\)/);
  });
});

interface ExportRequest {
  readonly contentType: string;
  readonly body: Buffer;
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
}

describePostgres('traces from keypool serve to an OTLP/HTTP receiver', () => {
  let receiver: Server;
  const received: ExportRequest[] = [];
  let deployment: Deployment;
  let replicas: Replica[] = [];
  let account: PooledAccount;
  let clientKey: string;

  beforeAll(async () => {
    receiver = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        if (request.url === '/v1/traces') received.push({ contentType: request.headers['content-type'] ?? '', body: Buffer.concat(chunks) });
        response.writeHead(200, { 'content-type': request.headers['content-type'] ?? 'application/json' }).end(request.headers['content-type']?.includes('json') ? '{}' : '');
      });
    });
    await new Promise<void>((done) => receiver.listen(0, '127.0.0.1', done));
    const address = receiver.address();
    const endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    deployment = await Deployment.create();
    [account] = (await deployment.addAccounts('openai', [{ name: 'traced-account' }])) as [PooledAccount];
    clientKey = (await deployment.issueKey('traced-client')).key;
    const common = {
      databaseUrl: deployment.databaseUrl(),
      secrets: deployment.secrets,
    };
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: '100', LOG_LEVEL: 'info' };
    const [json, proto] = await Promise.all([
      startReplicas(1, { ...common, prefix: 'json', env: { ...otel, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_SERVICE_NAME: 'keypool-json' } }),
      startReplicas(1, { ...common, prefix: 'proto', env: { ...otel, OTEL_SERVICE_NAME: 'keypool-proto' } }),
    ]);
    replicas = [...json, ...proto];
  }, 90_000);

  afterAll(async () => {
    await stopAll(replicas);
    await deployment?.close();
    receiver?.close();
  }, 60_000);

  /** One request through a replica with a traceparent; the mock upstream answers `status`. */
  async function tracedRequest(replica: Replica, key: string, status: number): Promise<{ traceId: string; parentSpanId: string; allowed: boolean }> {
    const traceId = randomBytes(16).toString('hex');
    const parentSpanId = randomBytes(8).toString('hex');
    const call = replica.client.process({ 'x-keypool-provider': 'openai' });
    call.send(
      requestHeadersMsg({
        ':method': 'POST',
        ':path': '/v1/chat/completions',
        authorization: `Bearer ${key}`,
        traceparent: `00-${traceId}-${parentSpanId}-01`,
      }),
    );
    const answer = await call.next(10_000);
    const allowed = 'request_headers' in answer;
    if (allowed) {
      expect(Object.values(setHeadersOf(answer)).join(' ')).toContain(account.upstreamKey);
      call.send(responseHeadersMsg(status, status === 429 ? { 'retry-after': '1' } : {}));
      await call.next(10_000);
    }
    call.halfClose();
    await call.status.catch(() => undefined);
    return { traceId, parentSpanId, allowed };
  }

  it('http/json: decide and observe spans on the caller\'s trace, with attributes and never a key; trace ids in the log', async () => {
    const replica = replicas[0]!;
    const allowed = await tracedRequest(replica, clientKey, 429);
    const denied = await tracedRequest(replica, `kp_${'x'.repeat(40)}`, 0);
    expect(allowed.allowed).toBe(true);
    expect(denied.allowed).toBe(false);

    const spans = await waitForSpans('keypool-json', 3);
    const decide = spans.find((s) => s.name === 'keypool.decide' && s.traceId === allowed.traceId)!;
    const observe = spans.find((s) => s.name === 'keypool.observe' && s.traceId === allowed.traceId)!;
    const deny = spans.find((s) => s.name === 'keypool.decide' && s.traceId === denied.traceId)!;
    expect(decide.parentSpanId).toBe(allowed.parentSpanId);
    expect(attributes(decide)).toMatchObject({ 'keypool.provider': 'openai', 'keypool.outcome': 'allow', 'keypool.account': 'traced-account' });
    expect(typeof attributes(decide)['keypool.priority']).toBe('number');
    expect(observe.parentSpanId).toBe(decide.spanId);
    expect(attributes(observe)).toMatchObject({
      'keypool.provider': 'openai',
      'keypool.account': 'traced-account',
      'http.response.status_code': 429,
      'keypool.observation': 'rate_limited',
    });
    expect(deny.parentSpanId).toBe(denied.parentSpanId);
    expect(attributes(deny)).toMatchObject({ 'keypool.outcome': 'deny', 'keypool.deny_code': 'invalid_api_key', 'http.response.status_code': 401 });

    // Nothing exported carries the client key or the upstream key.
    const everything = received.map((r) => r.body.toString('utf8')).join('\n');
    expect(everything).not.toContain(clientKey);
    expect(everything).not.toContain(account.upstreamKey);
    expect(everything).not.toContain(clientKey.slice(0, 12));

    // Log lines written inside a span carry its trace id.
    const logs = replica.logRecords();
    const deniedLine = logs.find((line) => line.msg === 'request denied' && line.trace_id === denied.traceId);
    expect(deniedLine?.span_id).toBe(deny.spanId);
    const cooling = logs.find((line) => line.msg === 'account cooling down');
    expect(cooling?.trace_id).toBe(allowed.traceId);
    expect(cooling?.span_id).toBe(observe.spanId);
    // Lines outside any span have none.
    const startup = logs.find((line) => line.msg === 'config store opened');
    expect(startup).toBeDefined();
    expect(startup!.trace_id).toBeUndefined();
  }, 60_000);

  it('http/protobuf (the default) reaches the receiver as application/x-protobuf carrying the spans', async () => {
    const replica = replicas[1]!;
    const { traceId } = await tracedRequest(replica, clientKey, 200);
    const deadline = Date.now() + 20_000;
    let found: ExportRequest | undefined;
    while (found === undefined && Date.now() < deadline) {
      // In protobuf, ids are raw bytes and strings are UTF-8: look for both.
      found = received.find((r) => r.contentType === 'application/x-protobuf' && r.body.includes(Buffer.from(traceId, 'hex')));
      if (found === undefined) await sleep(100);
    }
    expect(found, 'no protobuf export with the trace id').toBeDefined();
    expect(found!.body.includes(Buffer.from('keypool.decide'))).toBe(true);
    expect(found!.body.includes(Buffer.from('keypool-proto'))).toBe(true);
    expect(found!.body.includes(Buffer.from(account.upstreamKey))).toBe(false);
  }, 60_000);

  async function waitForSpans(serviceName: string, count: number): Promise<OtlpSpan[]> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const spans = received
        .filter((r) => r.contentType.includes('json'))
        .flatMap((r) => (JSON.parse(r.body.toString('utf8')) as { resourceSpans: Array<{ resource: OtlpSpan; scopeSpans: Array<{ spans: OtlpSpan[] }> }> }).resourceSpans)
        .filter((rs) => attributes(rs.resource)['service.name'] === serviceName)
        .flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
      if (spans.length >= count || Date.now() > deadline) return spans;
      await sleep(100);
    }
  }
});

function attributes(holder: { attributes: OtlpSpan['attributes'] }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of holder.attributes) {
    const v = value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue;
    out[key] = typeof v === 'string' && value.intValue !== undefined ? Number(v) : v;
  }
  return out;
}

function listTs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return listTs(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}
