// The real gRPC server driven by a grpc-js client sending what Envoy sends, over the real engine of
// test/helpers/test-engine.ts (static snapshot, memory rate state; only ports faked).
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HOLD_UNTIL_RESPONSE_END } from '../../src/adapters/envoy/codec.js';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import {
  ExtProcClient,
  requestHeadersMsg,
  responseHeadersMsg,
  setHeadersOf,
  waitFor,
  type Msg,
} from './ext-proc-client.js';
import { createTestEngine, SPECIAL_POOLS, TEST_KEYS, type TestEngine, type TestEngineOptions } from '../helpers/test-engine.js';

const CLIENT_KEY = TEST_KEYS.live;
/** Streams of these providers: a pool cooling down (429, retry-after 7), one whose rate state fails, one with a CR/LF secret. */
const BUSY = { 'x-keypool-provider': SPECIAL_POOLS.busy };
const BROKEN = { 'x-keypool-provider': SPECIAL_POOLS.broken };
const UNSAFE = { 'x-keypool-provider': SPECIAL_POOLS.unsafe };

interface LogLine {
  level: number;
  msg: string;
}

let engine: TestEngine;
let server: ExtProcServer;
let client: ExtProcClient;
let logs: LogLine[];

async function start(options: { drainTimeoutMs?: number; healthPollMs?: number } = {}): Promise<void> {
  logs = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
  server = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, ...options });
  client = new ExtProcClient(`127.0.0.1:${server.port}`);
}

beforeEach(async () => {
  engine = await createTestEngine();
  await start();
});

/** Restarts the server over an engine built with other options (e.g. accounts with a max_concurrency). */
async function restartWith(options: TestEngineOptions): Promise<void> {
  client.close();
  await server.shutdown();
  engine = await createTestEngine(options);
  await start();
}

afterEach(async () => {
  client.close();
  await server.shutdown();
});

const openaiRequest = (key = CLIENT_KEY, address: string | null = '10.1.2.3:4567') =>
  requestHeadersMsg({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${key}` }, address);

function immediate(msg: Msg): { status: { code: string | number }; body: Buffer; details: string; headers: Record<string, string> } {
  const ir = msg['immediate_response'] as {
    status: { code: string | number };
    body: Buffer;
    details: string;
    headers?: { set_headers?: Array<{ header: { key: string; raw_value: Buffer } }> };
  };
  expect(ir, `expected an immediate_response, got ${JSON.stringify(msg)}`).toBeDefined();
  const headers: Record<string, string> = {};
  for (const o of ir.headers?.set_headers ?? []) headers[o.header.key] = o.header.raw_value.toString();
  return { ...ir, headers };
}

describe('Process stream', () => {
  it('allow: header mutation, then response observed, continued, and the ticket released once', async () => {
    const call = client.process({ 'x-keypool-provider': 'openai' });
    call.send(openaiRequest());
    const first = await call.next();
    expect(first['request']).toBeUndefined(); // responses carry their own discriminator
    expect(setHeadersOf(first)).toEqual({
      authorization: 'Bearer sk-openai-a',
      'x-keypool-priority': '1',
      'x-keypool-tenant': 'acme',
    });
    const mutation = (first['request_headers'] as { response: { header_mutation: { remove_headers: string[]; set_headers: Msg[] } } })
      .response.header_mutation;
    // What core's buildAllow removes: the key header presented, the upstream auth header, and the two headers keypool
    // sets (a client cannot smuggle its own priority or tenant upstream).
    expect(mutation.remove_headers).toEqual(['authorization', 'x-keypool-priority', 'x-keypool-tenant']);
    for (const option of mutation.set_headers) {
      expect(option['append']).toEqual({ value: false });
      expect((option['header'] as Msg)['value']).toBeUndefined();
    }
    expect(engine.views[0]).toMatchObject({ provider: 'openai', clientAddress: '10.1.2.3:4567' });
    expect(engine.views[0]?.headers['authorization']).toBe(`Bearer ${CLIENT_KEY}`);

    call.send(responseHeadersMsg(200, { 'x-ratelimit-remaining-requests': '99' }));
    const second = await call.next();
    expect(second).toEqual({ response_headers: {}, response: 'response_headers' });
    expect(engine.observed).toHaveLength(1);
    expect(engine.observed[0]?.status).toBe(200);
    expect(engine.observed[0]?.headers['x-ratelimit-remaining-requests']).toBe('99');

    call.halfClose();
    expect((await call.status).code).toBe(grpc.status.OK);
    await waitFor(() => engine.released.length === 1, 2_000, 'release');
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('provider comes from the stream metadata', async () => {
    const call = client.process({ 'x-keypool-provider': 'anthropic' });
    call.send(requestHeadersMsg({ ':path': '/v1/messages', 'x-api-key': CLIENT_KEY }));
    expect(setHeadersOf(await call.next())['x-api-key']).toBe('sk-ant-a');
    expect(engine.views[0]?.provider).toBe('anthropic');
    call.cancel();
  });

  it('missing provider metadata -> the engine sees an empty provider (and denies it)', async () => {
    const call = client.process({});
    call.send(openaiRequest());
    // Core answers a route that names no provider 503 unknown_provider (a gateway misconfiguration, not the client's).
    expect(immediate(await call.next()).status.code).toBe('ServiceUnavailable');
    expect(engine.views[0]?.provider).toBe('');
    expect(logs.some((l) => l.msg.includes('x-keypool-provider'))).toBe(true);
    call.cancel();
  });

  it('missing source.address -> clientAddress null', async () => {
    const call = client.process();
    call.send(openaiRequest(CLIENT_KEY, null));
    await call.next();
    expect(engine.views[0]?.clientAddress).toBeNull();
    call.cancel();
  });

  it('deny: ImmediateResponse with explicit status, JSON body, content-type, retry-after, details', async () => {
    const call = client.process(BUSY);
    call.send(openaiRequest());
    const ir = immediate(await call.next());
    expect(ir.status.code).toBe('TooManyRequests'); // 429, decoded by enum name
    expect(ir.headers).toEqual({ 'content-type': 'application/json', 'retry-after': '7' });
    expect(JSON.parse(ir.body.toString())).toMatchObject({ error: { code: 'pool_exhausted' } });
    expect(ir.details).toBe('pool_exhausted');
    call.cancel();
    expect(engine.issued).toHaveLength(0);
  });

  it('engine throws -> 503 keypool_unavailable ImmediateResponse (never a clean close)', async () => {
    const call = client.process(BROKEN);
    call.send(openaiRequest());
    const ir = immediate(await call.next());
    expect(ir.status.code).toBe('ServiceUnavailable');
    expect(JSON.parse(ir.body.toString())).toMatchObject({ error: { code: 'keypool_unavailable' } });
    expect(logs.some((l) => l.level >= 50 && l.msg.includes('503'))).toBe(true);
    call.cancel();
  });

  it('an allow that cannot be encoded safely (CR/LF in a value) -> 503, and its ticket is released', async () => {
    const call = client.process(UNSAFE);
    call.send(openaiRequest());
    expect(immediate(await call.next()).status.code).toBe('ServiceUnavailable');
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    call.cancel();
  });

  it('cancel after allow releases the ticket exactly once', async () => {
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    call.cancel();
    await waitFor(() => engine.released.length > 0, 2_000, 'release');
    await new Promise((r) => setTimeout(r, 100));
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('cancel while the engine is still deciding releases the late ticket exactly once', async () => {
    engine.decideDelayMs = 150;
    const call = client.process();
    call.send(openaiRequest());
    await waitFor(() => engine.views.length === 1, 2_000, 'decide started');
    call.cancel();
    await waitFor(() => engine.issued.length === 1, 2_000, 'decision');
    await waitFor(() => engine.released.length === 1, 2_000, 'release');
    await new Promise((r) => setTimeout(r, 100));
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('observe then half-close releases exactly once', async () => {
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    // A body-less 429 (end_of_stream): observed at its headers, no body asked for.
    call.send(responseHeadersMsg(429, { 'retry-after': '3' }, true));
    await call.next();
    call.halfClose();
    await call.status;
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    expect(engine.observed[0]?.status).toBe(429);
  });

  it('concurrent streams each get their own answer and release', async () => {
    const calls = Array.from({ length: 20 }, () => client.process());
    for (const call of calls) call.send(openaiRequest());
    const answers = await Promise.all(calls.map((c) => c.next()));
    expect(answers.every((a) => setHeadersOf(a)['authorization']?.startsWith('Bearer sk-openai-'))).toBe(true);
    for (const call of calls) call.send(responseHeadersMsg(200));
    await Promise.all(calls.map((c) => c.next()));
    for (const call of calls) call.halfClose();
    await Promise.all(calls.map((c) => c.status));
    await waitFor(() => engine.released.length === 20, 2_000, 'releases');
    expect(Object.values(engine.releaseCounts()).every((n) => n === 1)).toBe(true);
  });
});

describe('an account with max_concurrency: its slot is held until the response has ended', () => {
  const HOLD_ANSWER = { response_headers: {}, mode_override: HOLD_UNTIL_RESPONSE_END, response: 'response_headers' };

  /** An allowed, observed stream whose ticket holds a concurrency slot. */
  async function holding(): Promise<ReturnType<ExtProcClient['process']>> {
    await restartWith({ maxConcurrency: 10 });
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    call.send(responseHeadersMsg(200, { 'content-type': 'text/event-stream' }));
    expect(await call.next()).toEqual(HOLD_ANSWER);
    expect(engine.observed.map((o) => o.status)).toEqual([200]);
    return call;
  }

  const settle = () => new Promise((r) => setTimeout(r, 50));

  it('response_headers: observed at once, answered with the hold mode, the slot kept; Envoy ending the stream frees it once', async () => {
    const call = await holding();
    await settle();
    expect(engine.released).toHaveLength(0);
    call.halfClose();
    expect((await call.status).code).toBe(grpc.status.OK);
    await waitFor(() => engine.released.length === 1, 2_000, 'release');
    await settle();
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('a reset (client gone, Envoy reset) frees the slot once', async () => {
    const call = await holding();
    call.cancel();
    await waitFor(() => engine.released.length === 1, 2_000, 'release');
    await settle();
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('upstream trailers end the response: answered CONTINUE and the slot freed right there, once', async () => {
    const call = await holding();
    call.send({ response_trailers: { trailers: { headers: [{ key: 'x-usage', raw_value: Buffer.from('42') }] } } });
    expect(await call.next()).toEqual({ response_trailers: {}, response: 'response_trailers' });
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    call.halfClose();
    expect((await call.status).code).toBe(grpc.status.OK);
    await settle();
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    expect(logs.some((l) => l.msg.includes('does not ask for'))).toBe(false);
  });

  it('a response without a body (end_of_stream on its headers) frees the slot at once, no hold mode', async () => {
    await restartWith({ maxConcurrency: 10 });
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    const headersOnly = responseHeadersMsg(204);
    (headersOnly['response_headers'] as { end_of_stream: boolean }).end_of_stream = true;
    call.send(headersOnly);
    expect(await call.next()).toEqual({ response_headers: {}, response: 'response_headers' });
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    call.halfClose();
    await call.status;
  });

  it('an account without max_concurrency keeps the cheap path: no hold mode, slot freed at the response headers', async () => {
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    call.send(responseHeadersMsg(200, { 'content-type': 'text/event-stream' }));
    expect(await call.next()).toEqual({ response_headers: {}, response: 'response_headers' });
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    call.cancel();
  });

  it('server shutdown past the drain timeout ends a holding stream with OK (Envoy lets the response finish), slot freed once', async () => {
    client.close();
    await server.shutdown();
    await start({ drainTimeoutMs: 200 });
    const call = await holding();
    await server.shutdown();
    expect((await call.status).code).toBe(grpc.status.OK);
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });
});

describe('later attempts of one request (upstream-filter failover)', () => {
  /** What envoy-failover.yaml's provider clusters send as the ext_proc stream's initial metadata. */
  const FAILOVER_METADATA = { 'x-keypool-provider': 'openai', 'x-keypool-retry-context': 'enabled' };

  /** Attempt 2 as Envoy sends it: the shared header map still carries attempt 1's mutation. */
  function attempt(requestId: string, auth: string): Msg {
    return requestHeadersMsg({ ':path': '/v1/chat/completions', 'x-request-id': requestId, authorization: auth, 'x-keypool-priority': '1', 'x-keypool-tenant': 'acme' });
  }

  /** Attempt 1 of `requestId`, allowed and answered 429 upstream; the authorization keypool injected. */
  async function firstAttempt(requestId: string, metadata: Record<string, string>): Promise<string> {
    const first = client.process(metadata);
    first.send(requestHeadersMsg({ ':path': '/v1/chat/completions', 'x-request-id': requestId, authorization: `Bearer ${CLIENT_KEY}` }));
    const injected = setHeadersOf(await first.next())['authorization'];
    first.send(responseHeadersMsg(429, { 'retry-after': '20' }));
    await first.next();
    first.halfClose();
    await first.status;
    return injected as string;
  }

  it('the retry is decided on the client key and gets a different account', async () => {
    const injected = await firstAttempt('r-1', FAILOVER_METADATA);

    const second = client.process(FAILOVER_METADATA);
    second.send(attempt('r-1', injected));
    const retried = setHeadersOf(await second.next())['authorization'];
    expect(engine.views[1]?.headers['authorization']).toBe(`Bearer ${CLIENT_KEY}`);
    expect(engine.views[1]?.headers['x-keypool-priority']).toBeUndefined();
    expect(retried).toMatch(/^Bearer sk-openai-/);
    expect(retried).not.toBe(injected);
    second.cancel();
  });

  it('an unknown request id or wrong injected credential is decided as sent (and denied)', async () => {
    const call = client.process(FAILOVER_METADATA);
    call.send(attempt('never-seen', 'Bearer sk-openai-a'));
    expect(immediate(await call.next()).status.code).toBe('Unauthorized');
    call.cancel();
  });

  it('streams without x-keypool-retry-context: enabled (envoy.yaml) are neither remembered nor recalled', async () => {
    // Remembered, but the retry's stream does not ask: decided as sent.
    const injected = await firstAttempt('r-3', FAILOVER_METADATA);
    const second = client.process();
    second.send(attempt('r-3', injected));
    expect(immediate(await second.next()).status.code).toBe('Unauthorized');
    second.cancel();
    // Not remembered: the first attempt's stream did not ask, so even an asking retry is decided as sent.
    const notRemembered = await firstAttempt('r-4', { 'x-keypool-provider': 'openai', 'x-keypool-retry-context': 'off' });
    const third = client.process(FAILOVER_METADATA);
    third.send(attempt('r-4', notRemembered));
    expect(immediate(await third.next()).status.code).toBe('Unauthorized');
    third.cancel();
  });

  it('can be turned off', async () => {
    client.close();
    await server.shutdown();
    logs = [];
    server = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger: pino({ level: 'silent' }), retryContext: false });
    client = new ExtProcClient(`127.0.0.1:${server.port}`);
    const injected = await firstAttempt('r-2', FAILOVER_METADATA);
    const second = client.process(FAILOVER_METADATA);
    second.send(attempt('r-2', injected));
    expect(immediate(await second.next()).status.code).toBe('Unauthorized');
    second.cancel();
  });
});

describe('unexpected messages get a defined answer and a log line', () => {
  it('response_headers before request_headers -> continue without observation', async () => {
    const call = client.process();
    call.send(responseHeadersMsg(200));
    expect(await call.next()).toEqual({ response_headers: {}, response: 'response_headers' });
    expect(engine.observed).toHaveLength(0);
    expect(logs.some((l) => l.level === 40 && l.msg.includes('before request_headers'))).toBe(true);
    call.cancel();
  });

  it('bodies and trailers -> CONTINUE answers of the matching kind', async () => {
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    call.send({ request_body: { body: Buffer.from('{}'), end_of_stream: true } });
    expect((await call.next())['response']).toBe('request_body');
    call.send({ request_trailers: { trailers: { headers: [] } } });
    expect((await call.next())['response']).toBe('request_trailers');
    call.send(responseHeadersMsg(200));
    expect((await call.next())['response']).toBe('response_headers');
    call.send({ response_body: { body: Buffer.from('data: x\n\n') } });
    expect((await call.next())['response']).toBe('response_body');
    call.send({ response_trailers: { trailers: { headers: [] } } });
    expect((await call.next())['response']).toBe('response_trailers');
    expect(logs.filter((l) => l.msg.includes('does not ask for'))).toHaveLength(1);
    call.halfClose();
    expect((await call.status).code).toBe(grpc.status.OK);
  });

  it('duplicate request_headers -> gRPC error, ticket released', async () => {
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    call.send(openaiRequest());
    const status = await call.status;
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    await waitFor(() => engine.released.length === 1, 2_000, 'release');
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    expect(logs.some((l) => l.msg.includes('protocol error'))).toBe(true);
  });

  it('response_headers after a deny -> gRPC error', async () => {
    const call = client.process(BUSY);
    call.send(openaiRequest());
    await call.next();
    call.send(responseHeadersMsg(200));
    expect((await call.status).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('an empty ProcessingRequest (unknown kind) -> gRPC error, not OK', async () => {
    const call = client.process();
    call.send({});
    expect((await call.status).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('half-close before request_headers -> gRPC error, never OK', async () => {
    const call = client.process();
    call.halfClose();
    const status = await call.status;
    expect(status.code).not.toBe(grpc.status.OK);
  });

  it('the server survives all of the above', async () => {
    const call = client.process();
    call.send({});
    await call.status;
    const ok = client.process();
    ok.send(openaiRequest());
    expect(setHeadersOf(await ok.next())['authorization']).toBeDefined();
    ok.cancel();
  });
});

describe('health', () => {
  it('NOT_SERVING until the engine is ready, then SERVING; setServing(false) forces NOT_SERVING', async () => {
    engine.ready = false;
    expect(await client.check()).toBe('NOT_SERVING');
    expect(await client.check('envoy.service.ext_proc.v3.ExternalProcessor')).toBe('NOT_SERVING');
    engine.ready = true;
    expect(await client.check()).toBe('SERVING');
    server.setServing(false);
    expect(await client.check()).toBe('NOT_SERVING');
    server.setServing(true);
    expect(await client.check()).toBe('SERVING');
  });

  it('unknown service -> NOT_FOUND', async () => {
    await expect(client.check('nope')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('Watch streams the status and its changes (polled readiness, switch, drain)', async () => {
    client.close();
    await server.shutdown();
    engine.ready = false;
    await start({ healthPollMs: 20 });
    const seen: string[] = [];
    const watch = client.watch();
    watch.on('data', (m: Msg) => seen.push(String(m['status'])));
    const ended = new Promise<void>((resolve) => watch.on('status', () => resolve()));
    watch.on('error', () => undefined);
    await waitFor(() => seen.length === 1, 2_000, 'initial status');
    engine.ready = true;
    await waitFor(() => seen.length === 2, 2_000, 'ready');
    server.setServing(false);
    await waitFor(() => seen.length === 3, 2_000, 'switch off');
    server.setServing(true);
    await waitFor(() => seen.length === 4, 2_000, 'switch on');
    await server.shutdown();
    await ended;
    expect(seen).toEqual(['NOT_SERVING', 'SERVING', 'NOT_SERVING', 'SERVING', 'NOT_SERVING']);
  });
});

describe('graceful shutdown', () => {
  it('lets an open stream finish, refuses new streams, then stops', async () => {
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    let stopped = false;
    const stopping = server.shutdown().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(stopped).toBe(false);
    // A new client (new connection) is refused.
    const other = new ExtProcClient(`127.0.0.1:${server.port}`);
    const late = other.process();
    late.send(openaiRequest());
    expect((await late.status).code).toBe(grpc.status.UNAVAILABLE);
    other.close();
    // The open stream still completes normally.
    call.send(responseHeadersMsg(200));
    expect((await call.next())['response']).toBe('response_headers');
    call.halfClose();
    expect((await call.status).code).toBe(grpc.status.OK);
    await stopping;
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('forces open streams closed after drainTimeoutMs, releasing their tickets', async () => {
    client.close();
    await server.shutdown();
    await start({ drainTimeoutMs: 300 });
    const call = client.process();
    call.send(openaiRequest());
    await call.next();
    const t0 = Date.now();
    await server.shutdown();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(Date.now() - t0).toBeLessThan(3_000);
    const status = await call.status;
    expect(status.code).not.toBe(grpc.status.OK);
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('shutdown is idempotent', async () => {
    await Promise.all([server.shutdown(), server.shutdown()]);
  });
});
