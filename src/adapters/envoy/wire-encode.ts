// Encoding of ProcessingResponse to its protobuf bytes (see wire-format.ts for the rules both directions follow).
import type {
  DurationMsg,
  HeaderMutationMsg,
  ImmediateResponseMsg,
  ProcessingModeMsg,
  ProcessingResponseMsg,
} from './messages.js';
import { LENGTH_DELIMITED, VARINT, WireFormatError, utf8Write } from './wire-common.js';

// ---------------------------------------------------------------------------------------------
// Encoding: sizes first (varint lengths need them), then one write into a buffer of exactly that size.
// ---------------------------------------------------------------------------------------------

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  return 5;
}

/** Size of a length-delimited field with a one-byte tag (every field keypool writes has a number below 16). */
function fieldSize(contentSize: number): number {
  return 1 + varintSize(contentSize) + contentSize;
}

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  byte(b: number): void {
    this.buf[this.pos++] = b;
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  /** Tag (field number < 16) of a length-delimited field, then its length. */
  open(field: number, size: number): void {
    this.buf[this.pos++] = (field << 3) | LENGTH_DELIMITED;
    this.varint(size);
  }

  string(field: number, value: string, byteLength: number): void {
    this.open(field, byteLength);
    this.pos += utf8Write.call(this.buf, value, this.pos, byteLength);
  }

  bytes(field: number, value: Uint8Array): void {
    this.open(field, value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }
}

// HeaderValueOption { header: HeaderValue { key 1, raw_value 3 } = 1, append: BoolValue { value 1 } = 2 }.
// append is always present (ext_proc honours it, see codec.ts); BoolValue{value:false} is written as protobufjs
// writes it: the wrapper with an explicit `value: 0`.
const APPEND_SIZE = fieldSize(2);

function mutationSize(m: HeaderMutationMsg, sizes: number[]): number {
  let size = 0;
  const set = m.set_headers;
  if (set) {
    for (let i = 0; i < set.length; i++) {
      const o = set[i]!;
      const keyBytes = Buffer.byteLength(o.header.key, 'utf8');
      const headerSize = fieldSize(keyBytes) + fieldSize(o.header.raw_value.length);
      sizes.push(headerSize, keyBytes);
      size += fieldSize(fieldSize(headerSize) + (o.append ? APPEND_SIZE : 0));
    }
  }
  const remove = m.remove_headers;
  if (remove) {
    for (let i = 0; i < remove.length; i++) {
      const bytes = Buffer.byteLength(remove[i]!, 'utf8');
      sizes.push(bytes);
      size += fieldSize(bytes);
    }
  }
  return size;
}

function writeMutation(w: Writer, m: HeaderMutationMsg, sizes: number[], at: { i: number }): void {
  const set = m.set_headers;
  if (set) {
    for (let i = 0; i < set.length; i++) {
      const o = set[i]!;
      const headerSize = sizes[at.i++]!;
      const keyBytes = sizes[at.i++]!;
      w.open(1, fieldSize(headerSize) + (o.append ? APPEND_SIZE : 0));
      w.open(1, headerSize);
      w.string(1, o.header.key, keyBytes);
      w.bytes(3, o.header.raw_value);
      if (o.append) {
        w.open(2, 2);
        w.byte((1 << 3) | VARINT);
        w.byte(o.append.value ? 1 : 0);
      }
    }
  }
  const remove = m.remove_headers;
  if (remove) {
    for (let i = 0; i < remove.length; i++) w.string(2, remove[i]!, sizes[at.i++]!);
  }
}

const HEADER_SEND_MODES: Record<string, number> = { DEFAULT: 0, SEND: 1, SKIP: 2 };
const BODY_SEND_MODES: Record<string, number> = { NONE: 0, STREAMED: 1, BUFFERED: 2, BUFFERED_PARTIAL: 3, FULL_DUPLEX_STREAMED: 4 };

/** ProcessingMode's six enum fields in order; every one written (as protobufjs does for set fields), zeros included. */
function modeValues(mode: ProcessingModeMsg): number[] {
  return [
    HEADER_SEND_MODES[mode.request_header_mode]!,
    HEADER_SEND_MODES[mode.response_header_mode]!,
    BODY_SEND_MODES[mode.request_body_mode]!,
    BODY_SEND_MODES[mode.response_body_mode]!,
    HEADER_SEND_MODES[mode.request_trailer_mode]!,
    HEADER_SEND_MODES[mode.response_trailer_mode]!,
  ];
}

/** Field number of each ProcessingResponse oneof member keypool writes. */
const RESPONSE_FIELDS = {
  request_headers: 1,
  response_headers: 2,
  request_body: 3,
  response_body: 4,
  request_trailers: 5,
  response_trailers: 6,
  immediate_response: 7,
} as const;

type ResponseKey = keyof typeof RESPONSE_FIELDS;

/**
 * Answers that never change (CONTINUE to response headers, trailers, and the hold override) are frozen objects in
 * codec.ts: encoded once, by identity. Bounded by construction (only frozen messages are remembered, and only
 * codec.ts freezes answers, a handful of them).
 */
const frozenEncodings = new WeakMap<object, Buffer>();

/** envoy.service.ext_proc.v3.ProcessingResponse from the shapes in messages.ts. */
export function encodeProcessingResponse(msg: ProcessingResponseMsg): Buffer {
  const known = frozenEncodings.get(msg);
  if (known) return known;
  const encoded = encodeResponse(msg);
  if (Object.isFrozen(msg)) frozenEncodings.set(msg, encoded);
  return encoded;
}

function encodeResponse(msg: ProcessingResponseMsg): Buffer {
  const sizes: number[] = [];
  const record = msg as Record<string, unknown>;
  if (record['override_message_timeout'] !== undefined) return encodeTimeoutOverride(record['override_message_timeout'] as DurationMsg);
  let key: ResponseKey | null = null;
  for (const k in RESPONSE_FIELDS) {
    if (record[k] !== undefined) {
      key = k as ResponseKey;
      break;
    }
  }
  if (key === null) throw new WireFormatError('ProcessingResponse without a response');
  const inner = record[key] as Record<string, unknown>;
  let innerSize: number;
  let mutation: HeaderMutationMsg | undefined;
  let mutationSizeBytes = 0;
  let commonSize = 0;
  let immediate: { statusSize: number; headersSize: number; detailsBytes: number } | null = null;
  if (key === 'immediate_response') {
    const ir = inner as unknown as ImmediateResponseMsg;
    const statusSize = 1 + varintSize(ir.status.code);
    const headersSize = ir.headers ? mutationSize(ir.headers, sizes) : 0;
    const detailsBytes = ir.details ? Buffer.byteLength(ir.details, 'utf8') : 0;
    immediate = { statusSize, headersSize, detailsBytes };
    innerSize =
      fieldSize(statusSize) +
      (ir.headers ? fieldSize(headersSize) : 0) +
      (ir.body ? fieldSize(ir.body.length) : 0) +
      (ir.details ? fieldSize(detailsBytes) : 0);
  } else if (key === 'request_trailers' || key === 'response_trailers') {
    mutation = inner['header_mutation'] as HeaderMutationMsg | undefined;
    mutationSizeBytes = mutation ? mutationSize(mutation, sizes) : 0;
    innerSize = mutation ? fieldSize(mutationSizeBytes) : 0;
  } else {
    // HeadersResponse / BodyResponse { response: CommonResponse { header_mutation = 2 } = 1 }
    const common = inner['response'] as { header_mutation?: HeaderMutationMsg } | undefined;
    mutation = common?.header_mutation;
    mutationSizeBytes = mutation ? mutationSize(mutation, sizes) : 0;
    commonSize = mutation ? fieldSize(mutationSizeBytes) : 0;
    innerSize = common ? fieldSize(commonSize) : 0;
  }
  const mode = (record['mode_override'] as ProcessingModeMsg | undefined) ?? null;
  const modeValuesList = mode ? modeValues(mode) : null;
  const modeSize = modeValuesList ? modeValuesList.reduce((n, v) => n + 1 + varintSize(v), 0) : 0;

  const w = new Writer(Buffer.allocUnsafe(fieldSize(innerSize) + (mode ? fieldSize(modeSize) : 0)));
  const at = { i: 0 };
  w.open(RESPONSE_FIELDS[key], innerSize);
  if (immediate) {
    const ir = inner as unknown as ImmediateResponseMsg;
    w.open(1, immediate.statusSize);
    w.byte((1 << 3) | VARINT);
    w.varint(ir.status.code);
    if (ir.headers) {
      w.open(2, immediate.headersSize);
      writeMutation(w, ir.headers, sizes, at);
    }
    if (ir.body) w.bytes(3, ir.body);
    if (ir.details) w.string(5, ir.details, immediate.detailsBytes);
  } else if (key === 'request_trailers' || key === 'response_trailers') {
    if (mutation) {
      w.open(1, mutationSizeBytes);
      writeMutation(w, mutation, sizes, at);
    }
  } else if (inner['response'] !== undefined) {
    w.open(1, commonSize);
    if (mutation) {
      w.open(2, mutationSizeBytes);
      writeMutation(w, mutation, sizes, at);
    }
  }
  if (modeValuesList) {
    w.open(9, modeSize);
    modeValuesList.forEach((v, i) => {
      w.byte(((i + 1) << 3) | VARINT);
      w.varint(v);
    });
  }
  if (w.pos !== w.buf.length) throw new Error(`keypool: encoder size mismatch (${w.pos} of ${w.buf.length})`);
  return w.buf;
}

/** ProcessingResponse { override_message_timeout (10): Duration { seconds (1), nanos (2) } }, both written (as protobufjs does for set fields, zeros included). */
function encodeTimeoutOverride(duration: DurationMsg): Buffer {
  const { seconds, nanos } = duration;
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > 0x7fffffff || !Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw new WireFormatError('override_message_timeout must be a non-negative Duration');
  }
  const innerSize = 1 + varintSize(seconds) + 1 + varintSize(nanos);
  const w = new Writer(Buffer.allocUnsafe(fieldSize(innerSize)));
  w.open(10, innerSize);
  w.byte((1 << 3) | VARINT);
  w.varint(seconds);
  w.byte((2 << 3) | VARINT);
  w.varint(nanos);
  return w.buf;
}
