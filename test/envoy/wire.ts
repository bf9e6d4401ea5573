// A minimal protobuf wire-format reader/writer, independent of protobufjs, so tests can check the
// bytes keypool puts on the wire against the official field numbers.

export interface WireField {
  readonly number: number;
  readonly wireType: number;
  /** varint value (wire type 0) */
  readonly varint?: bigint;
  /** payload (wire type 2) */
  readonly bytes?: Uint8Array;
}

export function readFields(buf: Uint8Array): WireField[] {
  const out: WireField[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[pos++];
      if (b === undefined) throw new Error('truncated varint');
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const tag = Number(varint());
    const number = tag >>> 3;
    const wireType = tag & 7;
    if (wireType === 0) out.push({ number, wireType, varint: varint() });
    else if (wireType === 2) {
      const len = Number(varint());
      out.push({ number, wireType, bytes: buf.subarray(pos, pos + len) });
      pos += len;
    } else if (wireType === 1) pos += 8;
    else if (wireType === 5) pos += 4;
    else throw new Error(`unsupported wire type ${wireType}`);
  }
  return out;
}

/** All length-delimited payloads of `number` at this level. */
export function sub(buf: Uint8Array, number: number): Uint8Array[] {
  return readFields(buf)
    .filter((f) => f.number === number && f.bytes)
    .map((f) => f.bytes as Uint8Array);
}

/** The single payload of a path of field numbers, e.g. [1, 1, 2]. */
export function at(buf: Uint8Array, path: readonly number[]): Uint8Array | undefined {
  let cur: Uint8Array | undefined = buf;
  for (const n of path) {
    if (!cur) return undefined;
    cur = sub(cur, n)[0];
  }
  return cur;
}

export function encodeVarint(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

/** A length-delimited field. */
export function lenField(number: number, payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Uint8Array.from([...encodeVarint((number << 3) | 2), ...encodeVarint(bytes.length), ...bytes]);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}
