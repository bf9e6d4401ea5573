// keypool's minimal gRPC server (src/adapters/envoy/grpc-server.ts) on its own, with a test service whose messages
// are JSON: grpc-js as the client (interop: unary, server streaming, bidi, statuses, metadata, TLS and mTLS) and a raw
// node:http2 client for what grpc-js never sends (compressed or oversized messages, a reset mid-call, other paths).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GrpcServer, Status, type GrpcServerCall } from '../../src/adapters/envoy/grpc-server.js';
import { waitFor } from './ext-proc-client.js';

const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => {
    const text = bytes.toString();
    if (text === 'garbage') throw new Error('not JSON');
    return JSON.parse(text) as unknown;
  },
};

const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
  originalName: name,
});

const SERVICE = {
  Unary: method('Unary', false, false),
  Watch: method('Watch', false, true),
  Chat: method('Chat', true, true),
} as unknown as grpc.ServiceDefinition;

interface Seen {
  metadata: Array<string | Buffer>;
  binary: Array<string | Buffer>;
  events: string[];
}

function implementation(seen: Seen) {
  return {
    Unary: (call: GrpcServerCall<{ n: number }>, callback: (err: unknown, value?: unknown) => void) => {
      seen.metadata = call.metadata.get('authorization');
      seen.binary = call.metadata.get('x-trace-bin');
      if (call.request!.n < 0) callback({ code: Status.INVALID_ARGUMENT, details: 'n must not be negative: é' });
      else callback(null, { n: call.request!.n + 1 });
    },
    Watch: (call: GrpcServerCall<{ n: number }>) => {
      for (let i = 0; i < call.request!.n; i++) call.write({ i });
      call.end();
    },
    Chat: (call: GrpcServerCall<{ say: string }>) => {
      call.on('data', (msg: { say: string }) => {
        seen.events.push(`data:${msg.say}`);
        if (msg.say === 'fail') call.emit('error', { code: Status.FAILED_PRECONDITION, details: 'as asked' });
        else call.write({ echo: msg.say });
      });
      call.on('end', () => {
        seen.events.push('end');
        call.end();
      });
      call.on('cancelled', () => seen.events.push('cancelled'));
      call.on('error', () => seen.events.push('error'));
      call.on('close', () => seen.events.push('close'));
    },
  };
}

const Client = grpc.makeGenericClientConstructor(SERVICE, 'Echo') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => grpc.Client & Record<string, (...args: any[]) => any>;

function unary(client: InstanceType<typeof Client>, request: unknown, metadata = new grpc.Metadata()): Promise<unknown> {
  return new Promise((resolve, reject) => client['Unary']!(request, metadata, (err: unknown, value: unknown) => (err ? reject(err) : resolve(value))));
}

describe('GrpcServer with grpc-js as the client (plaintext)', () => {
  const seen: Seen = { metadata: [], binary: [], events: [] };
  const server = new GrpcServer({ maxMessageBytes: 1024 });
  let client: InstanceType<typeof Client>;
  let port = 0;

  beforeAll(async () => {
    server.addService(SERVICE, implementation(seen));
    port = await server.listen('127.0.0.1:0');
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  afterEach(() => {
    seen.events.length = 0;
  });

  it('unary: the answer, request metadata (text and -bin) as grpc-js presents it', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Bearer t0ken');
    metadata.set('x-trace-bin', Buffer.from([1, 2, 255]));
    expect(await unary(client, { n: 41 }, metadata)).toEqual({ n: 42 });
    expect(seen.metadata).toEqual(['Bearer t0ken']);
    expect(seen.binary).toEqual([Buffer.from([1, 2, 255])]);
  });

  it('unary: an error status reaches the client with its details (trailers-only)', async () => {
    await expect(unary(client, { n: -1 })).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT, details: 'n must not be negative: é' });
  });

  it('server streaming: every message, then OK', async () => {
    const got: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client['Watch']!({ n: 3 }) as grpc.ClientReadableStream<unknown>;
      call.on('data', (m) => got.push(m));
      call.on('error', reject);
      call.on('status', (s: grpc.StatusObject) => (s.code === Status.OK ? resolve() : reject(new Error(s.details))));
    });
    expect(got).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
  });

  it('bidi: messages in order; the client half-closes, the handler ends with OK', async () => {
    const got: unknown[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client['Chat']!() as grpc.ClientDuplexStream<unknown, unknown>;
      call.on('data', (m) => {
        got.push(m);
        if (got.length === 2) call.end();
      });
      call.on('error', () => undefined);
      call.on('status', resolve);
      call.write({ say: 'a' });
      call.write({ say: 'b' });
    });
    expect(status.code).toBe(Status.OK);
    expect(got).toEqual([{ echo: 'a' }, { echo: 'b' }]);
    await waitFor(() => seen.events.includes('close'), 2_000, 'close');
    expect(seen.events).toEqual(['data:a', 'data:b', 'end', 'close']);
  });

  it("bidi: a handler's emitted error becomes the call's status, after the messages already written", async () => {
    const got: unknown[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client['Chat']!() as grpc.ClientDuplexStream<unknown, unknown>;
      call.on('data', (m) => got.push(m));
      call.on('error', () => undefined);
      call.on('status', resolve);
      call.write({ say: 'a' });
      call.write({ say: 'fail' });
    });
    expect(got).toEqual([{ echo: 'a' }]);
    expect(status).toMatchObject({ code: Status.FAILED_PRECONDITION, details: 'as asked' });
  });

  it('an unknown method: UNIMPLEMENTED', async () => {
    const Other = grpc.makeGenericClientConstructor({ Nope: { ...method('Nope', false, false), path: '/test.Other/Nope' } } as never, 'Other');
    const other = new Other(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: any[]) => void> & grpc.Client;
    try {
      const err = await new Promise((resolve) => other['Nope']!({}, (e: unknown) => resolve(e)));
      expect(err).toMatchObject({ code: Status.UNIMPLEMENTED });
    } finally {
      other.close();
    }
  });
});

/** A raw HTTP/2 gRPC call: sends `frames` on /test.Echo/<name>; resolves with the response trailers (or headers if trailers-only). */
async function rawCall(session: ClientHttp2Session, name: string, frames: Buffer[], options: { reset?: boolean; end?: boolean } = {}) {
  const stream = session.request({ ':method': 'POST', ':path': `/test.Echo/${name}`, 'content-type': 'application/grpc', te: 'trailers' });
  const data: Buffer[] = [];
  let headers: IncomingHttpHeaders = {};
  let trailers: IncomingHttpHeaders = {};
  stream.on('response', (h) => (headers = h));
  stream.on('trailers', (t) => (trailers = t));
  stream.on('data', (d: Buffer) => {
    data.push(d);
    if (options.reset) stream.close(constants.NGHTTP2_NO_ERROR);
  });
  stream.on('error', () => undefined);
  for (const f of frames) stream.write(f);
  if (options.end !== false) stream.end();
  await new Promise((resolve) => stream.on('close', resolve));
  const status = trailers['grpc-status'] ?? headers['grpc-status'];
  return { status: status === undefined ? undefined : Number(status), message: trailers['grpc-message'] ?? headers['grpc-message'], data: Buffer.concat(data) };
}

function grpcFrame(payload: Buffer, compressed = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

describe('GrpcServer with a raw HTTP/2 client', () => {
  const seen: Seen = { metadata: [], binary: [], events: [] };
  const server = new GrpcServer({ maxMessageBytes: 64 });
  let session: ClientHttp2Session;
  let port = 0;

  beforeAll(async () => {
    server.addService(SERVICE, implementation(seen));
    port = await server.listen('127.0.0.1:0');
    session = connect(`http://127.0.0.1:${port}`);
  });

  afterAll(() => {
    session.close();
    server.forceShutdown();
  });

  afterEach(() => {
    seen.events.length = 0;
  });

  it('a message split across DATA frames is reassembled', async () => {
    const frame = grpcFrame(Buffer.from(JSON.stringify({ say: 'split' })));
    const result = await rawCall(session, 'Chat', [frame.subarray(0, 3), frame.subarray(3, 9), frame.subarray(9)]);
    expect(result.status).toBe(Status.OK);
    expect(result.data.subarray(5).toString()).toBe('{"echo":"split"}');
  });

  it('a compressed message: UNIMPLEMENTED, the handler sees an error, not a message', async () => {
    const result = await rawCall(session, 'Chat', [grpcFrame(Buffer.from('{}'), 1)], { end: false });
    expect(result.status).toBe(Status.UNIMPLEMENTED);
    expect(seen.events).not.toContain('data:undefined');
  });

  it('a message over maxMessageBytes: RESOURCE_EXHAUSTED', async () => {
    const result = await rawCall(session, 'Chat', [grpcFrame(Buffer.alloc(65, 0x20))], { end: false });
    expect(result.status).toBe(Status.RESOURCE_EXHAUSTED);
  });

  it('an undecodable message: INTERNAL, and the handler hears of it as an error', async () => {
    const result = await rawCall(session, 'Chat', [grpcFrame(Buffer.from('garbage'))], { end: false });
    expect(result.status).toBe(Status.INTERNAL);
    await waitFor(() => seen.events.includes('close'), 2_000, 'close');
    expect(seen.events).toContain('error');
  });

  it('END_STREAM then RST_STREAM right after the answer (how Envoy ends ext_proc streams by default): a normal end, no error', async () => {
    // Node's client, like Envoy, half-closes before it resets; the server sees the half-close or the reset first,
    // depending on timing: either is a clean end for the handler.
    await rawCall(session, 'Chat', [grpcFrame(Buffer.from('{"say":"last"}'))], { reset: true, end: false });
    await waitFor(() => seen.events.includes('close'), 2_000, 'close');
    expect([['data:last', 'end', 'close'], ['data:last', 'cancelled', 'close']]).toContainEqual(seen.events);
  });

  it('the client gone mid-call (connection cut): cancelled, not an error', async () => {
    const doomed = connect(`http://127.0.0.1:${port}`);
    const stream = doomed.request({ ':method': 'POST', ':path': '/test.Echo/Chat', 'content-type': 'application/grpc' });
    stream.on('error', () => undefined);
    stream.write(grpcFrame(Buffer.from('{"say":"hello"}')));
    await new Promise((resolve) => stream.once('data', resolve));
    doomed.destroy();
    await waitFor(() => seen.events.includes('close'), 2_000, 'close');
    expect(seen.events).toEqual(['data:hello', 'cancelled', 'close']);
  });

  it('not gRPC (GET, or another content type): 415 without reaching a handler', async () => {
    const stream = session.request({ ':method': 'GET', ':path': '/test.Echo/Unary' });
    const status = await new Promise((resolve) => stream.on('response', (h) => resolve(h[':status'])));
    stream.close();
    expect(status).toBe(415);
  });
});

describe('GrpcServer with TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keypool-grpc-tls-'));
  const file = (name: string) => readFileSync(join(dir, name));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const seen: Seen = { metadata: [], binary: [], events: [] };
  let server: GrpcServer;
  let port = 0;

  beforeAll(async () => {
    // A throwaway CA, a server certificate for 127.0.0.1, a client certificate.
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test-ca');
    for (const [name, cn, ext] of [['server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1'], ['client', 'envoy', 'extendedKeyUsage=clientAuth']] as const) {
      openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
      writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
    }
    server = new GrpcServer({ tls: { key: file('server.key'), cert: file('server.crt'), ca: file('ca.crt'), requestCert: true, rejectUnauthorized: true } });
    server.addService(SERVICE, implementation(seen));
    port = await server.listen('127.0.0.1:0');
  });

  afterAll(() => {
    server?.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('mTLS: a client with a certificate from the CA is served', async () => {
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(file('ca.crt'), file('client.key'), file('client.crt')));
    try {
      expect(await unary(client, { n: 1 })).toEqual({ n: 2 });
    } finally {
      client.close();
    }
  });

  it('mTLS: a client without a certificate is refused', async () => {
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(file('ca.crt')));
    try {
      await expect(unary(client, { n: 1 })).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    } finally {
      client.close();
    }
  });
});
