// The ext_proc channel's authentication, driven by a real grpc-js client against the real server (the real engine over a static snapshot, test/helpers/test-engine.ts):
// who may start, and what a caller without the token or a trusted client certificate gets (nothing).
import { copyFileSync, writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { channelSecurityProblem, openChannelSecurity, type ChannelSecurityConfig } from '../../src/adapters/envoy/channel-security.js';
import { startExtProcServer, type ExtProcServer } from '../../src/adapters/envoy/server.js';
import { loadConfig } from '../../src/config.js';
import { createTestPki, type TestCa, type TestCert, type TestPki } from '../helpers/tls.js';
import { ExtProcClient, requestHeadersMsg, setHeadersOf, type Msg } from './ext-proc-client.js';
import { createTestEngine, TEST_KEYS, type TestEngine } from '../helpers/test-engine.js';

const CLIENT_KEY = TEST_KEYS.live;

const logger = pino({ level: 'silent' });
const TOKEN = 'a'.repeat(24) + 'channel-token-for-tests-0123456789';
const SERVER_NAME = 'keypool.test';
const request = requestHeadersMsg({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${CLIENT_KEY}` }, '10.0.0.1:1');

describe('channelSecurityProblem: who may start', () => {
  const tls = { tlsCertFile: '/c.pem', tlsKeyFile: '/k.pem' };
  const cases: Array<[string, ChannelSecurityConfig, string | null]> = [
    ['loopback plaintext (sidecar)', { listen: '127.0.0.1:50051' }, null],
    ['localhost plaintext', { listen: 'localhost:50051' }, null],
    ['[::1] plaintext', { listen: '[::1]:50051' }, null],
    ['loopback with a token only', { listen: '127.0.0.1:50051', token: TOKEN }, null],
    ['any address, plaintext', { listen: '0.0.0.0:50051' }, 'KEYPOOL_GRPC_LISTEN'],
    ['any address, token without TLS', { listen: '0.0.0.0:50051', token: TOKEN }, 'KEYPOOL_GRPC_LISTEN'],
    ['any address, TLS without client authentication', { listen: '0.0.0.0:50051', ...tls }, 'KEYPOOL_GRPC_LISTEN'],
    ['any address, mTLS', { listen: '0.0.0.0:50051', ...tls, tlsClientCaFile: '/ca.pem' }, null],
    ['any address, TLS + token', { listen: '[::]:50051', ...tls, token: TOKEN }, null],
    ['certificate without key', { listen: '127.0.0.1:50051', tlsCertFile: '/c.pem' }, 'KEYPOOL_GRPC_TLS_KEY'],
    ['key without certificate', { listen: '127.0.0.1:50051', tlsKeyFile: '/k.pem' }, 'KEYPOOL_GRPC_TLS_CERT'],
    ['client CA without TLS', { listen: '127.0.0.1:50051', tlsClientCaFile: '/ca.pem' }, 'KEYPOOL_GRPC_TLS_CLIENT_CA'],
  ];
  it.each(cases)('%s', (_name, settings, variable) => {
    const problem = channelSecurityProblem(settings);
    expect(problem?.variable ?? null).toBe(variable);
    if (variable === 'KEYPOOL_GRPC_LISTEN') {
      for (const name of ['KEYPOOL_GRPC_TLS_CERT', 'KEYPOOL_GRPC_TLS_KEY', 'KEYPOOL_GRPC_TLS_CLIENT_CA', 'KEYPOOL_GRPC_TOKEN']) {
        expect(problem?.message).toContain(name);
      }
    }
  });

  it('the default listener is loopback; a short token is refused without being echoed', () => {
    expect(loadConfig({}, {}).grpcListen).toBe('127.0.0.1:50051');
    expect(() => loadConfig({}, { KEYPOOL_GRPC_TOKEN: 'short-secret-value' })).toThrow(/KEYPOOL_GRPC_TOKEN/);
    try {
      loadConfig({}, { KEYPOOL_GRPC_TOKEN: 'short-secret-value' });
    } catch (error) {
      expect((error as Error).message).not.toContain('short-secret-value');
    }
  });
});

describe('the transport-neutral rules', () => {
  it('authorizes: exactly one `Bearer <token>` value passes; without a token everything does', async () => {
    const withToken = await openChannelSecurity({ listen: '127.0.0.1:0', token: TOKEN });
    expect(withToken.tokenRequired).toBe(true);
    expect(withToken.authorizes([`Bearer ${TOKEN}`])).toBe(true);
    expect(withToken.authorizes([`bearer ${TOKEN}`])).toBe(true);
    for (const values of [[], [TOKEN], [`Bearer ${TOKEN}x`], [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`], [Buffer.from(`Bearer ${TOKEN}`)], [`Basic ${TOKEN}`]]) {
      expect(withToken.authorizes(values), String(values)).toBe(false);
    }
    const open = await openChannelSecurity({ listen: '127.0.0.1:0' });
    expect(open.tokenRequired).toBe(false);
    expect(open.authorizes([])).toBe(true);
    expect(open.tls()).toBeNull();
    expect(open.mode).toBe('plaintext');
  });
});

interface Started {
  readonly engine: TestEngine;
  readonly server: ExtProcServer;
  readonly reload: () => Promise<void>;
}

async function startSecured(settings: Omit<ChannelSecurityConfig, 'listen'>): Promise<Started> {
  const engine = await createTestEngine();
  const channel = await openChannelSecurity({ listen: '127.0.0.1:0', ...settings });
  const server = await startExtProcServer({ listen: '127.0.0.1:0', engine, logger, channel });
  return { engine, server, reload: channel.reload };
}

/** Sends one request_headers and resolves with the first answer or the stream's final status. */
async function attempt(client: ExtProcClient, metadata: Record<string, string> = {}): Promise<{ answer: Msg | null; status: grpc.StatusObject }> {
  const call = client.process({ 'x-keypool-provider': 'openai', ...metadata });
  call.send(request);
  const answer = await call.next(10_000).catch(() => null);
  call.cancel();
  return { answer, status: await call.status };
}

const clients: ExtProcClient[] = [];
function clientOf(port: number, options: ConstructorParameters<typeof ExtProcClient>[1] = {}): ExtProcClient {
  const client = new ExtProcClient(`127.0.0.1:${port}`, {
    ...options,
    channelOptions: { 'grpc.ssl_target_name_override': SERVER_NAME, 'grpc.default_authority': SERVER_NAME, ...options.channelOptions },
  });
  clients.push(client);
  return client;
}
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

describe('token on a loopback listener', () => {
  let started: Started;
  beforeAll(async () => {
    started = await startSecured({ token: TOKEN });
  });
  afterAll(() => started.server.shutdown());

  it('no token or a wrong one: UNAUTHENTICATED, no decision, no upstream key', async () => {
    const refused: Array<Record<string, string>> = [{}, { authorization: 'Bearer wrong-token-wrong-token-wrong-token' }, { authorization: TOKEN }];
    for (const metadata of refused) {
      const { answer, status } = await attempt(clientOf(started.server.port), metadata);
      expect(answer).toBeNull();
      expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(JSON.stringify(status)).not.toContain('sk-openai');
    }
    expect(started.engine.views).toHaveLength(0);
    await expect(clientOf(started.server.port).check()).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
  });

  it('with the token: decided as usual, and Health answers', async () => {
    const client = clientOf(started.server.port, { callMetadata: { authorization: `Bearer ${TOKEN}` } });
    const { answer } = await attempt(client);
    expect(setHeadersOf(answer!)['authorization']).toMatch(/^Bearer sk-openai-/);
    expect(started.engine.views).toHaveLength(1);
    expect(await client.check('envoy.service.ext_proc.v3.ExternalProcessor')).toBe('SERVING');
  });
});

describe('TLS', () => {
  let pki: TestPki;
  let ca: TestCa;
  let otherCa: TestCa;
  let serverCert: TestCert;
  let envoyCert: TestCert;
  let strangerCert: TestCert;
  const read = (file: string) => readFileSync(file);
  const tlsClient = (port: number, cert: TestCert | null, trust: TestCa = ca) =>
    clientOf(port, {
      credentials: grpc.credentials.createSsl(read(trust.certFile), cert ? read(cert.keyFile) : null, cert ? read(cert.certFile) : null),
    });

  beforeAll(() => {
    pki = createTestPki();
    ca = pki.ca('ca');
    otherCa = pki.ca('other-ca');
    serverCert = pki.leaf(ca, 'server', SERVER_NAME);
    envoyCert = pki.leaf(ca, 'envoy');
    strangerCert = pki.leaf(otherCa, 'stranger');
  });
  afterAll(() => pki.remove());

  describe('mTLS', () => {
    let started: Started;
    beforeAll(async () => {
      started = await startSecured({ tlsCertFile: serverCert.certFile, tlsKeyFile: serverCert.keyFile, tlsClientCaFile: ca.certFile });
    });
    afterAll(() => started.server.shutdown());

    it('tls(): the node:http2 options a secure listener needs (client CA, requestCert, rejectUnauthorized)', async () => {
      const channel = await openChannelSecurity({ listen: '0.0.0.0:0', tlsCertFile: serverCert.certFile, tlsKeyFile: serverCert.keyFile, tlsClientCaFile: ca.certFile });
      expect(channel.mode).toBe('tls+mtls');
      expect(channel.tls()).toMatchObject({ cert: read(serverCert.certFile), key: read(serverCert.keyFile), ca: read(ca.certFile), requestCert: true, rejectUnauthorized: true });
    });

    it('a client certificate signed by the client CA: decided, Health answers', async () => {
      const client = tlsClient(started.server.port, envoyCert);
      const { answer } = await attempt(client);
      expect(setHeadersOf(answer!)['authorization']).toMatch(/^Bearer sk-openai-/);
      expect(await client.check()).toBe('SERVING');
    });

    it('no client certificate, a foreign one, or plaintext: the handshake fails, nothing is decided', async () => {
      const before = started.engine.views.length;
      for (const client of [
        tlsClient(started.server.port, null),
        tlsClient(started.server.port, strangerCert),
        clientOf(started.server.port),
      ]) {
        const { answer, status } = await attempt(client);
        expect(answer).toBeNull();
        expect(status.code).toBe(grpc.status.UNAVAILABLE);
      }
      expect(started.engine.views.length).toBe(before);
    });
  });

  it('reload: new certificates serve new connections; a broken set is refused and the old one stays', async () => {
    const dir = pki.dir;
    const certFile = `${dir}/live.crt`;
    const keyFile = `${dir}/live.key`;
    copyFileSync(serverCert.certFile, certFile);
    copyFileSync(serverCert.keyFile, keyFile);
    const started = await startSecured({ tlsCertFile: certFile, tlsKeyFile: keyFile, token: TOKEN });
    try {
      const auth = { authorization: `Bearer ${TOKEN}` };
      expect(await clientOf(started.server.port, { credentials: grpc.credentials.createSsl(read(ca.certFile)), callMetadata: auth }).check()).toBe('SERVING');

      const rotated = pki.leaf(otherCa, 'rotated', SERVER_NAME);
      copyFileSync(rotated.certFile, certFile);
      copyFileSync(rotated.keyFile, keyFile);
      await started.reload();
      expect(await clientOf(started.server.port, { credentials: grpc.credentials.createSsl(read(otherCa.certFile)), callMetadata: auth }).check()).toBe('SERVING');
      await expect(clientOf(started.server.port, { credentials: grpc.credentials.createSsl(read(ca.certFile)), callMetadata: auth }).check()).rejects.toMatchObject({
        code: grpc.status.UNAVAILABLE,
      });

      writeFileSync(keyFile, 'not a key');
      await expect(started.reload()).rejects.toThrow(/KEYPOOL_GRPC_TLS_CERT/);
      expect(await clientOf(started.server.port, { credentials: grpc.credentials.createSsl(read(otherCa.certFile)), callMetadata: auth }).check()).toBe('SERVING');
    } finally {
      await started.server.shutdown();
    }
  });

  it('missing certificate files: refused at start, naming the variable', async () => {
    await expect(openChannelSecurity({ listen: '127.0.0.1:0', tlsCertFile: `${pki.dir}/nope.crt`, tlsKeyFile: serverCert.keyFile })).rejects.toThrow(
      /KEYPOOL_GRPC_TLS_CERT/,
    );
  });
});
