// Decoding of ProcessingRequest from its protobuf bytes (see wire-format.ts for the rules both directions follow).
import type {
  HeaderValueMsg,
  HttpHeadersMsg,
  ProcessingRequestMsg,
  StructMsg,
  StructValueMsg,
} from './messages.js';
import { FIXED32, FIXED64, LENGTH_DELIMITED, VARINT, WireFormatError, utf8Slice } from './wire-common.js';

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
