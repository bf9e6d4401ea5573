// The admin API against a web page the operator visits: DNS rebinding (a foreign Host), cross-site requests
// (Origin, Sec-Fetch-Site) and form posts (content type) are refused and change nothing. The loopback listener
// runs WITHOUT a token here, the default a browser attack targets. Requests go through node:http so Host and
// the browser headers are sent exactly as given.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
let keyId: string;

beforeAll(async () => {
  h = await startHarness({ token: undefined, allowedHosts: ['keypool-admin.internal'] });
  const created = await h.api('POST', '/admin/keys', { body: { name: 'target' }, token: null });
  expect(created.status, created.text).toBe(201);
  keyId = created.json.key.id;
});

afterAll(async () => {
  await h.close();
});

interface Raw {
  readonly status: number;
  readonly body: string;
}

function raw(method: string, path: string, headers: Record<string, string>, body = ''): Promise<Raw> {
  const url = new URL(h.baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const REVOKE = () => `/admin/keys/${keyId}/revoke`;
const JSON_TYPE = { 'content-type': 'application/json' };

async function keyStatus(): Promise<string> {
  const got = await h.api('GET', `/admin/keys/${keyId}`, { token: null });
  return got.json.key?.status ?? got.json.status;
}

async function keyCount(): Promise<number> {
  return (await h.api('GET', '/admin/keys', { token: null })).json.items.length;
}

describe('Host allowlist (DNS rebinding)', () => {
  it.each([
    ['a rebound name', 'attacker.example:9901'],
    ['a rebound name without port', 'attacker.example'],
    ['a look-alike of localhost', 'localhost.attacker.example'],
    ['another IP than the listener', '10.0.0.5'],
    ['garbage', 'a b'],
  ])('%s is refused on reads and writes, and nothing changes', async (_label, host) => {
    const list = await raw('GET', '/admin/keys', { host });
    expect(list.status).toBe(403);
    expect(JSON.parse(list.body)).toMatchObject({ error: { code: 'host_not_allowed' } });
    expect(list.body).not.toContain(keyId);
    const metrics = await raw('GET', '/metrics', { host });
    expect(metrics.status).toBe(403);
    const before = await keyCount();
    const mint = await raw('POST', '/admin/keys', { host, ...JSON_TYPE }, '{"name":"minted"}');
    expect(mint.status).toBe(403);
    expect(mint.body).not.toMatch(/kp_/);
    expect(await keyCount()).toBe(before);
  });

  it.each([
    ['the listener address', () => new URL(h.baseUrl).host],
    ['localhost', () => `localhost:${new URL(h.baseUrl).port}`],
    ['a name from KEYPOOL_ADMIN_ALLOWED_HOSTS', () => 'keypool-admin.internal:443'],
  ])('%s is accepted', async (_label, host) => {
    const list = await raw('GET', '/admin/keys', { host: host() });
    expect(list.status).toBe(200);
  });
});

describe('cross-site requests', () => {
  it.each([
    ['Origin of another site', { origin: 'https://attacker.example' }],
    ['Origin null', { origin: 'null' }],
    ['Sec-Fetch-Site cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site same-site', { 'sec-fetch-site': 'same-site' }],
  ])('%s: a state-changing request is refused and nothing changes', async (_label, headers) => {
    const res = await raw('POST', REVOKE(), { host: new URL(h.baseUrl).host, ...JSON_TYPE, ...headers });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'cross_site_request' } });
    expect(await keyStatus()).toBe('active');
  });

  it('same-origin browser requests and plain clients are served', async () => {
    const host = new URL(h.baseUrl).host;
    const sameOrigin = await raw('POST', '/admin/keys', { host, origin: h.baseUrl, 'sec-fetch-site': 'same-origin', ...JSON_TYPE }, '{"name":"same-origin"}');
    expect(sameOrigin.status, sameOrigin.body).toBe(201);
    // A cross-site GET is not refused by the Origin rule (it changes nothing, and CORS keeps its answer from the page).
    const read = await raw('GET', '/admin/keys', { host, 'sec-fetch-site': 'cross-site' });
    expect(read.status).toBe(200);
  });
});

describe('content type on state-changing requests', () => {
  it.each([
    ['a form, empty body', { 'content-type': 'application/x-www-form-urlencoded' }, ''],
    ['a form with fields', { 'content-type': 'application/x-www-form-urlencoded' }, 'a=b'],
    ['text/plain', { 'content-type': 'text/plain' }, '{}'],
    ['multipart', { 'content-type': 'multipart/form-data; boundary=x' }, ''],
    ['no content type, empty body', {}, ''],
  ])('%s: 415 and nothing changes', async (_label, headers, body) => {
    const res = await raw('POST', REVOKE(), { host: new URL(h.baseUrl).host, ...headers }, body);
    expect(res.status).toBe(415);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'unsupported_media_type' } });
    expect(await keyStatus()).toBe('active');
  });

  it('application/json with an empty body is accepted', async () => {
    const res = await raw('POST', REVOKE(), { host: new URL(h.baseUrl).host, ...JSON_TYPE });
    expect(res.status, res.body).toBe(200);
    expect(await keyStatus()).toBe('revoked');
  });
});
