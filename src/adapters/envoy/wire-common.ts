// What the protobuf decoder and encoder of the ext_proc hot path share (wire-format.ts describes both).

/** Thrown for bytes that are not a well-formed message: the transport turns it into a gRPC INTERNAL/INVALID_ARGUMENT. */
export class WireFormatError extends Error {
  constructor(what: string) {
    super(`keypool: malformed protobuf: ${what}`);
    this.name = 'WireFormatError';
  }
}

// Wire types.
export const VARINT = 0;
export const FIXED64 = 1;
export const LENGTH_DELIMITED = 2;
export const FIXED32 = 5;

/** Buffer#utf8Slice / latin1Slice: what toString ends in, without its argument handling. Not in Node's typings. */
type Slicer = (this: Buffer, start: number, end: number) => string;
type WriteUtf8 = (this: Buffer, value: string, offset: number, length: number) => number;
export const utf8Slice = (Buffer.prototype as unknown as { utf8Slice: Slicer }).utf8Slice;
export const utf8Write = (Buffer.prototype as unknown as { utf8Write: WriteUtf8 }).utf8Write;
