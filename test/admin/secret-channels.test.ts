// An upstream key leaves keypool through exactly two doors: the header mutation an allowed decision hands the
// gateway (ext_proc set_headers to Envoy, the set_headers call to Kong), and the check-health probe to the
// provider's configured host, in the provider's auth header. This test knocks on every other one: the ext_proc port
// without its token, every other part of the ext_proc answers, denials, the Kong record and log redactions, the
// probe redirected by an account tag, admin responses, logs and metrics (secret-leak.test.ts covers the admin paths
// in depth).
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openChannelSecurity } from '../../src/adapters/envoy/channel-security.js';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import { clientCredentialRedactions, headerBagFromKong, recordFromOutcome, upstreamMutation } from '../../src/adapters/kong/codec.js';
import { ExtProcClient, requestHeadersMsg, setHeadersOf, type Msg } from '../envoy/ext-proc-client.js';
import { startHarness, UPSTREAM_KEYS, type Harness } from './harness.js';

const TOKEN = 'secret-channels-test-token-0123456789abcdef';
const UPSTREAM = UPSTREAM_KEYS.good;

let h: Harness;
let clientKey: string;
let extProc: ExtProcServer;
const extProcLogs: string[] = [];
const attacker: Array<{ url: string; headers: IncomingMessage['headers'] }> = [];
const attackerServer = createServer((req, res) => {
  attacker.push({ url: req.url ?? '', headers: req.headers });
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[]}');
});

beforeAll(async () => {
  h = await startHarness();
  const account = await h.api('POST', '/admin/providers/openai/accounts', { body: { name: 'only-account', api_key: UPSTREAM } });
  expect(account.status).toBe(201);
  const key = await h.api('POST', '/admin/keys', { body: { name: 'channels' } });
  clientKey = key.json.api_key;
  await h.holder.reload();
  const channel = await openChannelSecurity({ listen: '127.0.0.1:0', token: TOKEN });
  const logger = pino({ level: 'trace' }, { write: (line: string) => void extProcLogs.push(line) });
  extProc = await startExtProcServer({ listen: '127.0.0.1:0', engine: h.engine, logger, channel });
  await new Promise<void>((resolve) => attackerServer.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await extProc?.shutdown();
  await new Promise<void>((resolve) => attackerServer.close(() => resolve()));
  await h?.close();
});

const request = (key: string) => requestHeadersMsg({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${key}` }, '10.0.0.1:1');

async function exchange(client: ExtProcClient, key: string): Promise<{ answer: Msg | null; status: grpc.StatusObject }> {
  const call = client.process({ 'x-keypool-provider': 'openai' });
  call.send(request(key));
  const answer = await call.next(10_000).catch(() => null);
  call.cancel();
  return { answer, status: await call.status };
}

/** The answer without its set_headers: everything Envoy gets besides the allowed mutation. */
function withoutSetHeaders(answer: Msg): string {
  return JSON.stringify(answer, (key, value: unknown) => (key === 'set_headers' ? '[allowed channel]' : value));
}

describe('an upstream key leaves only through the allowed header mutation', () => {
  it('ext_proc without the token: UNAUTHENTICATED, and no answer carries the key', async () => {
    const client = new ExtProcClient(`127.0.0.1:${extProc.port}`);
    try {
      const { answer, status } = await exchange(client, clientKey);
      expect(answer).toBeNull();
      expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(JSON.stringify(status)).not.toContain(UPSTREAM);
    } finally {
      client.close();
    }
  });

  it('ext_proc with the token: the key is in set_headers (authorization) and nowhere else; a denial carries none', async () => {
    const client = new ExtProcClient(`127.0.0.1:${extProc.port}`, { callMetadata: { authorization: `Bearer ${TOKEN}` } });
    try {
      const allowed = await exchange(client, clientKey);
      expect(setHeadersOf(allowed.answer!)['authorization']).toBe(`Bearer ${UPSTREAM}`);
      const rawSet = JSON.stringify((allowed.answer!['request_headers'] as { response: { header_mutation: { set_headers: unknown[] } } }).response.header_mutation.set_headers);
      expect(rawSet).not.toContain(UPSTREAM); // raw_value bytes, checked decoded above
      expect(withoutSetHeaders(allowed.answer!)).not.toContain(UPSTREAM);
      const denied = await exchange(client, `${clientKey}x`);
      expect(JSON.stringify(denied.answer)).not.toContain(UPSTREAM);
      expect(JSON.stringify(denied.status)).not.toContain(UPSTREAM);
    } finally {
      client.close();
    }
  });

  it('Kong: the ctx record and the log redactions never hold the key; only set_headers does', async () => {
    const headers = headerBagFromKong({ 'x-api-key': [clientKey] });
    const allowed = await h.engine.decide({ headers, clientAddress: '10.0.0.1', provider: 'openai' });
    expect(allowed.decision.kind).toBe('allow');
    try {
      expect(JSON.stringify(recordFromOutcome(allowed))).not.toContain(UPSTREAM);
      if (allowed.decision.kind !== 'allow') return;
      const mutation = upstreamMutation(allowed.decision.removeHeaders, allowed.decision.setHeaders);
      expect(mutation.set['authorization']).toBe(`Bearer ${UPSTREAM}`);
      expect(JSON.stringify([mutation.clear, mutation.redact, clientCredentialRedactions(headers)])).not.toContain(UPSTREAM);
    } finally {
      if (allowed.ticket) h.engine.release(allowed.ticket);
    }
  });

  it('check-health: only to the configured host, only in the auth header; an account tag cannot redirect it', async () => {
    const accounts = await h.api('GET', '/admin/providers/openai/accounts');
    const id: string = accounts.json.items.find((a: { name: string }) => a.name === 'only-account').id;
    const attackerUrl = `http://127.0.0.1:${(attackerServer.address() as AddressInfo).port}`;
    const tagged = await h.api('PATCH', `/admin/providers/openai/accounts/${id}`, { body: { tags: { base_url: attackerUrl } } });
    expect(tagged.status).toBe(200);
    const before = h.mock.requests.length;
    const probe = await h.api('POST', `/admin/providers/openai/accounts/${id}/check-health`);
    expect(probe.status).toBe(200);
    expect(probe.text).not.toContain(UPSTREAM);
    expect(attacker).toHaveLength(0);
    const sent = h.mock.requests.slice(before);
    expect(sent).toHaveLength(1);
    for (const { path, headers } of sent) {
      expect(path).not.toContain(UPSTREAM);
      const carrying = Object.entries(headers).filter(([, value]) => String(value).includes(UPSTREAM)).map(([name]) => name);
      expect(carrying).toEqual(['authorization']);
    }
  });

  it('logs and metrics of everything above carry no key', async () => {
    await h.writes.flush();
    const metrics = await h.api('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).not.toContain(UPSTREAM);
    expect(extProcLogs.length).toBeGreaterThan(0);
    expect(extProcLogs.join('\n')).not.toContain(UPSTREAM);
    expect(h.logs.join('\n')).not.toContain(UPSTREAM);
    expect(h.logs.join('\n')).not.toContain(clientKey);
  });
});
