// Hand-written protobuf wire format for the two ext_proc messages on keypool's hot path: ProcessingRequest (decoded)
// and ProcessingResponse (encoded), in exactly the plain-object shapes of messages.ts, so codec.ts and stream.ts do
// not know which decoder ran. Replaces protobufjs's reflection codec for the Process stream (measured in
// bench:extproc: see README "Performance"); the health service and the tests' clients keep protobufjs.
//
// Decoding reads only what keypool uses and skips every other field by its wire type, whatever its number: unknown
// fields (Envoy 1.40's protocol_config, field 11; metadata_context, 8) cost a skip, not an object. Within
// google.protobuf.Struct attributes only scalar values are decoded (keypool reads `source.address`, a string);
// nested structs and lists are skipped. A header's value is decoded straight from the received bytes into `value`:
// raw_value (UTF-8) when present and non-empty, else the legacy `value` field (Envoy's rule, see codec.ts), so no
// Buffer view is made per header; `raw_value` is never set by this decoder.
// Encoding writes the fields keypool sets, in field-number order, as protobufjs does (test/envoy/wire-format.test.ts
// checks both directions against protobufjs and the vendored protos).
import type {
  HeaderMutationMsg,
  HeaderValueMsg,
  HeaderValueOptionMsg,
  HttpHeadersMsg,
  ImmediateResponseMsg,
  ProcessingModeMsg,
  ProcessingRequestMsg,
  ProcessingResponseMsg,
  StructMsg,
  StructValueMsg,
} from './messages.js';

/** Thrown for bytes that are not a well-formed message: the transport turns it into a gRPC INTERNAL/INVALID_ARGUMENT. */
export class WireFormatError extends Error {
  constructor(what: string) {
    super(`keypool: malformed protobuf: ${what}`);
    this.name = 'WireFormatError';
  }
}

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** Buffer#utf8Slice / latin1Slice: what toString ends in, without its argument handling. Not in Node's typings. */
type Slicer = (this: Buffer, start: number, end: number) => string;
type WriteUtf8 = (this: Buffer, value: string, offset: number, length: number) => number;
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice: Slicer }).utf8Slice;
const utf8Write = (Buffer.prototype as unknown as { utf8Write: WriteUtf8 }).utf8Write;

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/** A cursor over one message's bytes. `end` bounds the current (sub)message. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    // Up to 2^53 exactly; field numbers, lengths, bools and enums are far below that.
    const buf = this.buf;
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireFormatError('truncated varint');
      const byte = buf[this.pos++]!;
      result += (byte & 0x7f) * shift;
      if (byte < 0x80) return result;
      shift *= 128;
    }
    throw new WireFormatError('varint too long');
  }

  /** End offset of the length-delimited field starting here (after its length prefix). */
  lengthEnd(): number {
    const length = this.varint();
    const end = this.pos + length;
    if (end > this.end) throw new WireFormatError('length past the end');
    return end;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.pos += 8;
        break;
      case LENGTH_DELIMITED:
        this.pos = this.lengthEnd();
        return;
      case FIXED32:
        this.pos += 4;
        break;
      default:
        // Groups (3, 4) are proto2-only and never sent by Envoy.
        throw new WireFormatError(`wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new WireFormatError('fixed field past the end');
  }

  string(end: number): string {
    const s = utf8Slice.call(this.buf, this.pos, end);
    this.pos = end;
    return s;
  }

  bytes(end: number): Buffer {
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new WireFormatError('truncated double');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
}

const REQUEST_KINDS: Record<number, ProcessingRequestMsg['request']> = {
  2: 'request_headers',
  3: 'response_headers',
  4: 'request_body',
  5: 'response_body',
  6: 'request_trailers',
  7: 'response_trailers',
};

/** envoy.service.ext_proc.v3.ProcessingRequest, as messages.ts declares it. */
export function decodeProcessingRequest(buf: Buffer): ProcessingRequestMsg {
  const r = new Reader(buf, 0, buf.length);
  const msg: ProcessingRequestMsg = {};
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (wireType === LENGTH_DELIMITED && field >= 2 && field <= 7) {
      const end = r.lengthEnd();
      const kind = REQUEST_KINDS[field]!;
      msg.request = kind;
      switch (field) {
        case 2:
          msg.request_headers = httpHeaders(r, end);
          break;
        case 3:
          msg.response_headers = httpHeaders(r, end);
          break;
        case 4:
          msg.request_body = httpBody(r, end);
          break;
        case 5:
          msg.response_body = httpBody(r, end);
          break;
        case 6:
          msg.request_trailers = { trailers: trailersOf(r, end) };
          break;
        default:
          msg.response_trailers = { trailers: trailersOf(r, end) };
      }
      r.pos = end;
    } else if (field === 9 && wireType === LENGTH_DELIMITED) {
      attributeEntry((msg.attributes ??= {}), r, r.lengthEnd());
    } else if (field === 10 && wireType === VARINT) {
      msg.observability_mode = r.varint() !== 0;
    } else {
      r.skip(wireType);
    }
  }
  return msg;
}

function httpHeaders(r: Reader, end: number): HttpHeadersMsg {
  const out: HttpHeadersMsg = {};
  while (r.pos < end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === 1 && wireType === LENGTH_DELIMITED) {
      const mapEnd = r.lengthEnd();
      out.headers = { headers: headerValues(r, mapEnd, out.headers?.headers) };
      r.pos = mapEnd;
    } else if (field === 2 && wireType === LENGTH_DELIMITED) {
      attributeEntry((out.attributes ??= {}), r, r.lengthEnd());
    } else if (field === 3 && wireType === VARINT) {
      out.end_of_stream = r.varint() !== 0;
    } else {
      r.skip(wireType);
    }
  }
  return out;
}

/** envoy.config.core.v3.HeaderMap: its repeated HeaderValue (1), appended to `into` when a map arrives in parts. */
function headerValues(r: Reader, end: number, into: HeaderValueMsg[] | undefined): HeaderValueMsg[] {
  const list = into ?? [];
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) list.push(headerValue(r, r.lengthEnd()));
    else r.skip(tag & 7);
  }
  return list;
}

function headerValue(r: Reader, end: number): HeaderValueMsg {
  let key: string | undefined;
  let value: string | undefined;
  let raw = '';
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | LENGTH_DELIMITED:
        key = r.string(r.lengthEnd());
        break;
      case (2 << 3) | LENGTH_DELIMITED:
        value = r.string(r.lengthEnd());
        break;
      case (3 << 3) | LENGTH_DELIMITED:
        raw = r.string(r.lengthEnd());
        break;
      default:
        r.skip(tag & 7);
    }
  }
  r.pos = end;
  return { key, value: raw.length > 0 ? raw : value };
}

function trailersOf(r: Reader, end: number): { headers?: HeaderValueMsg[] } | undefined {
  let trailers: { headers?: HeaderValueMsg[] } | undefined;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) {
      const mapEnd = r.lengthEnd();
      trailers = { headers: headerValues(r, mapEnd, trailers?.headers) };
      r.pos = mapEnd;
    } else r.skip(tag & 7);
  }
  return trailers;
}

function httpBody(r: Reader, end: number): { body?: Uint8Array; end_of_stream?: boolean } {
  const out: { body?: Uint8Array; end_of_stream?: boolean } = {};
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) out.body = r.bytes(r.lengthEnd());
    else if (tag === ((2 << 3) | VARINT)) out.end_of_stream = r.varint() !== 0;
    else r.skip(tag & 7);
  }
  return out;
}

/** One entry of map<string, google.protobuf.Struct> (key 1, value 2). */
function attributeEntry(into: Record<string, StructMsg>, r: Reader, end: number): void {
  let key = '';
  let value: StructMsg = {};
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) key = r.string(r.lengthEnd());
    else if (tag === ((2 << 3) | LENGTH_DELIMITED)) value = struct(r, r.lengthEnd());
    else r.skip(tag & 7);
  }
  r.pos = end;
  into[key] = value;
}

/** google.protobuf.Struct: map<string, Value> fields = 1. */
function struct(r: Reader, end: number): StructMsg {
  const fields: Record<string, StructValueMsg> = {};
  while (r.pos < end) {
    const tag = r.varint();
    if (tag !== ((1 << 3) | LENGTH_DELIMITED)) {
      r.skip(tag & 7);
      continue;
    }
    const entryEnd = r.lengthEnd();
    let key = '';
    let value: StructValueMsg = {};
    while (r.pos < entryEnd) {
      const entryTag = r.varint();
      if (entryTag === ((1 << 3) | LENGTH_DELIMITED)) key = r.string(r.lengthEnd());
      else if (entryTag === ((2 << 3) | LENGTH_DELIMITED)) value = structValue(r, r.lengthEnd());
      else r.skip(entryTag & 7);
    }
    fields[key] = value;
  }
  r.pos = end;
  return { fields };
}

/** google.protobuf.Value, scalars only (null 1, number 2, string 3, bool 4); struct (5) and list (6) are skipped. */
function structValue(r: Reader, end: number): StructValueMsg {
  let value: StructValueMsg = {};
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | VARINT:
        r.varint();
        value = { kind: 'nullValue', nullValue: 'NULL_VALUE' };
        break;
      case (2 << 3) | FIXED64:
        value = { kind: 'numberValue', numberValue: r.double() };
        break;
      case (3 << 3) | LENGTH_DELIMITED:
        value = { kind: 'stringValue', stringValue: r.string(r.lengthEnd()) };
        break;
      case (4 << 3) | VARINT:
        value = { kind: 'boolValue', boolValue: r.varint() !== 0 };
        break;
      default:
        r.skip(tag & 7);
    }
  }
  r.pos = end;
  return value;
}

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
