// A raw HTTP/2 client for the one case grpc-js clients cannot produce: a peer that opens an ext_proc stream, sends
// request_headers and resets the stream in the same TCP write (Envoy does this when the downstream client goes away
// at once). Frames are built by hand (RFC 9113; HPACK literals without Huffman coding, RFC 7541 6.2.2).
import { connect, type Socket } from 'node:net';
import { loadProtos } from '../../src/adapters/envoy/protos.js';
import type { Msg } from './ext-proc-client.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_DATA = 0;
const FRAME_HEADERS = 1;
const FRAME_RST_STREAM = 3;
const FRAME_SETTINGS = 4;
const FLAG_END_HEADERS = 0x4;
const FLAG_ACK = 0x1;
const CANCEL = 0x8;

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK integer with an n-bit prefix (first byte's high bits given in `high`). */
function hpackInt(value: number, prefixBits: number, high: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [high | value];
  const out = [high | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** "Literal header field without indexing, new name" for every pair. */
function hpackBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of headers) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    bytes.push(0x00, ...hpackInt(n.length, 7, 0), ...n, ...hpackInt(v.length, 7, 0), ...v);
  }
  return Buffer.from(bytes);
}

/** The gRPC length-prefixed message of a ProcessingRequest. */
function grpcMessage(request: Msg): Buffer {
  const { extProcService } = loadProtos();
  const serialize = (extProcService['Process'] as { requestSerialize: (m: Msg) => Buffer }).requestSerialize;
  const body = serialize(request);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

/**
 * Connects, then writes in ONE write: the connection preface, SETTINGS, and `streams` Process streams that each carry
 * HEADERS (with the gRPC metadata), one DATA frame with `request`, and RST_STREAM(CANCEL). Resolves once the server's
 * first frames arrived (it has read the write), then leaves the connection open for `holdMs` so the server cannot
 * learn anything from a closed socket, and closes it.
 */
export async function requestThenResetInOneWrite(
  port: number,
  request: Msg,
  metadata: Readonly<Record<string, string>>,
  streams = 1,
): Promise<{ close(): void }> {
  const socket: Socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const message = grpcMessage(request);
  const parts: Buffer[] = [PREFACE, frame(FRAME_SETTINGS, 0, 0, Buffer.alloc(0))];
  for (let i = 0; i < streams; i++) {
    const streamId = 1 + i * 2;
    const headers = hpackBlock([
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', '/envoy.service.ext_proc.v3.ExternalProcessor/Process'],
      [':authority', `127.0.0.1:${port}`],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ...Object.entries(metadata),
    ]);
    const rst = Buffer.alloc(4);
    rst.writeUInt32BE(CANCEL);
    parts.push(
      frame(FRAME_HEADERS, FLAG_END_HEADERS, streamId, headers),
      frame(FRAME_DATA, 0, streamId, message),
      frame(FRAME_RST_STREAM, 0, streamId, rst),
    );
  }
  socket.write(Buffer.concat(parts));
  // Answer the server's SETTINGS like a real peer (an unacknowledged SETTINGS would eventually end the connection).
  let acked = false;
  socket.on('data', () => {
    if (acked) return;
    acked = true;
    socket.write(frame(FRAME_SETTINGS, FLAG_ACK, 0, Buffer.alloc(0)));
  });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('data', () => resolve()));
  return { close: () => socket.destroy() };
}
