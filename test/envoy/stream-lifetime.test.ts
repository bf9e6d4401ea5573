// What a stream does with its ticket over its life, driven through the real gRPC server: the answer to a
// state-changing response waits for the state commit; the release rides on the observation; the gateway's own
// replies are marked as such; a stream reset in the same write as its request_headers holds nothing; a long stream
// keeps its slot by renewal. The real engine over a static snapshot (test/helpers/test-engine.ts; only its ports faked), real grpc-js, real HTTP/2 frames.
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { responseOriginFrom } from '../../src/adapters/envoy/codec.js';
import { LeaseKeeper } from '../../src/adapters/lease-keeper.js';
import type { ProcessingRequestMsg } from '../../src/adapters/envoy/messages.js';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import { ExtProcClient, requestHeadersMsg, responseBodyMsg, responseHeadersMsg, waitFor, type Msg } from './ext-proc-client.js';
import { READ_ERROR_BODY } from '../../src/adapters/envoy/codec.js';
import { createTestEngine, TEST_KEYS, type TestEngine, type TestEngineOptions } from '../helpers/test-engine.js';

const CLIENT_KEY = TEST_KEYS.live;
import { requestThenResetInOneWrite } from './raw-h2.js';

let engine: TestEngine;
let server: ExtProcServer;
let client: ExtProcClient;

async function start(options: TestEngineOptions = {}): Promise<void> {
  engine = await createTestEngine(options);
  server = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger: pino({ level: 'silent' }) });
  client = new ExtProcClient(`127.0.0.1:${server.port}`);
}

beforeEach(() => start());

afterEach(async () => {
  client.close();
  await server.shutdown();
});

const request = () => requestHeadersMsg({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${CLIENT_KEY}` });

function withDetails(msg: Msg, details: string): Msg {
  return { ...msg, attributes: { 'envoy.filters.http.ext_proc': { fields: { 'response.code_details': { stringValue: details } } } } };
}

describe('response origin (codec)', () => {
  const withAttributes = (fields: Record<string, unknown>): ProcessingRequestMsg =>
    ({ attributes: { 'envoy.filters.http.ext_proc': { fields } } }) as unknown as ProcessingRequestMsg;
  it.each([
    ['via_upstream', 'upstream'],
    ['upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}', 'gateway'],
    ['response_timeout', 'gateway'],
    ['no_healthy_upstream', 'gateway'],
  ])('response.code_details %s -> %s', (details, origin) => {
    expect(responseOriginFrom(withAttributes({ 'response.code_details': { stringValue: details } }))).toBe(origin);
  });
  it('absent (response_attributes not configured) -> undefined; another filter\'s attributes are not read', () => {
    expect(responseOriginFrom({} as ProcessingRequestMsg)).toBeUndefined();
    const other = { attributes: { other: { fields: { 'response.code_details': { stringValue: 'via_upstream' } } } } };
    expect(responseOriginFrom(other as unknown as ProcessingRequestMsg)).toBeUndefined();
  });
});

describe('answers and releases', () => {
  it('a 429 is answered only after its state commit settles; the release rides on the observation', async () => {
    const commits: Array<() => void> = [];
    engine.pendingCommits = commits;
    const call = client.process();
    call.send(request());
    await call.next();
    // Without a body (end_of_stream): observed at its headers.
    call.send(responseHeadersMsg(429, { 'retry-after': '5' }, true));
    await waitFor(() => commits.length === 1, 2_000, 'the commit to start');
    const answer = call.next();
    let answered = false;
    void answer.then(() => (answered = true));
    // Not answered while the commit is pending.
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(answered).toBe(false);
    commits[0]!();
    expect(await answer).toHaveProperty('response_headers');
    call.halfClose();
    await call.status;
    expect(engine.observed[0]?.options).toEqual({ release: true });
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('a 429 with a body: keypool asks for it, observes with it, and answers the body only after the commit', async () => {
    const commits: Array<() => void> = [];
    engine.pendingCommits = commits;
    const call = client.process();
    call.send(request());
    await call.next();
    call.send(responseHeadersMsg(429, { 'retry-after': '5' }));
    const headersAnswer = await call.next();
    expect(headersAnswer).toMatchObject({ response_headers: {}, mode_override: READ_ERROR_BODY });
    // Nothing observed or released before the body.
    expect(engine.observed).toHaveLength(0);
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 0 });
    const body = '{"error":{"code":"insufficient_quota","type":"insufficient_quota"}}';
    call.send(responseBodyMsg(body));
    await waitFor(() => commits.length >= 1, 2_000, 'the commit to start');
    const answer = call.next();
    let answered = false;
    void answer.then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(answered).toBe(false);
    for (const commit of commits) commit();
    // The body answer changes nothing: no body mutation, no header mutation.
    expect(await answer).toEqual({ response_body: {}, response: 'response_body' });
    call.halfClose();
    await call.status;
    expect(engine.observed[0]?.status).toBe(429);
    expect(Buffer.from(engine.observed[0]!.options.body!).toString()).toBe(body);
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    expect(engine.writes.invalidated.map((entry) => entry.as)).toEqual(['disabled']);
  });

  it('a 429 whose body never comes (an Envoy without the override entry) is still observed when the stream ends', async () => {
    const call = client.process();
    call.send(request());
    await call.next();
    call.send(responseHeadersMsg(429, { 'retry-after': '5' }));
    await call.next();
    call.halfClose();
    await call.status;
    await waitFor(() => engine.observed.length === 1, 2_000, 'observation at the end');
    expect(engine.observed[0]?.status).toBe(429);
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it('a 200 is answered without waiting for anything', async () => {
    engine.pendingCommits = [];
    const call = client.process();
    call.send(request());
    await call.next();
    call.send(responseHeadersMsg(200));
    expect(await call.next()).toHaveProperty('response_headers');
    call.halfClose();
    await call.status;
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
  });

  it("Envoy's local reply is observed as the gateway's, the provider's answer as the upstream's", async () => {
    for (const details of ['upstream_reset_before_response_started{remote_connection_failure}', 'via_upstream']) {
      const call = client.process();
      call.send(request());
      await call.next();
      call.send(withDetails(responseHeadersMsg(503), details));
      await call.next();
      call.halfClose();
      await call.status;
    }
    expect(engine.observed.map((o) => o.options.origin)).toEqual(['gateway', 'upstream']);
    expect(Object.values(engine.releaseCounts())).toEqual([1, 1]);
  });
});

describe('slots tied to live streams', () => {
  it('request_headers and RST_STREAM in one write: every slot is released and no stream is kept', async () => {
    engine.decideDelayMs = 20;
    const connection = await requestThenResetInOneWrite(server.port, request(), { 'x-keypool-provider': 'openai' }, 20);
    try {
      await waitFor(() => engine.issued.length + engine.views.length >= 20 && engine.released.length === engine.issued.length, 5_000, 'releases');
      // Give any late write a chance to show up as a second release or a stuck keeper entry.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(Object.values(engine.releaseCounts()).every((n) => n === 1)).toBe(true);
      expect(LeaseKeeper.of(engine).size).toBe(0);
    } finally {
      connection.close();
    }
  });

  it('a stream that holds its ticket is renewed every renewIntervalMs, and not after it ended', async () => {
    // A 300 ms lease is renewed every 100 ms; accounts with a max_concurrency hold their slot to the response's end.
    client.close();
    await server.shutdown();
    await start({ leaseMs: 300, maxConcurrency: 10 });
    expect(engine.renewIntervalMs).toBe(100);
    const call = client.process();
    call.send(request());
    await call.next();
    call.send(responseHeadersMsg(200)); // a body follows: the slot is held until the response ends
    await call.next();
    await waitFor(() => engine.renewed.length >= 5, 5_000, 'renewals');
    expect(engine.released).toHaveLength(0);
    call.halfClose(); // the response ended
    await call.status;
    expect(engine.releaseCounts()).toEqual({ 'lease-1': 1 });
    const renewedAtEnd = engine.renewed.length;
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(engine.renewed.length).toBe(renewedAtEnd);
    expect(LeaseKeeper.of(engine).size).toBe(0);
  });
});
