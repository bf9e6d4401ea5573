// The Content-Encoding of provider response bodies, for the two places keypool reads them. Clients that send
// Accept-Encoding (the OpenAI SDKs do) get gzip, deflate or br bodies from providers, error bodies included: read raw,
// an `insufficient_quota` 429 would parse as nothing and the account would only be cooled, never disabled.
// - contentCodingOf: which coding a body has, and whether keypool reads it;
// - streamDecoderFor: the usage observer's (usage-observer.ts) decompressor for 2xx bodies as they stream;
// - readableErrorBody: the error body Envoy buffered for keypool (BUFFERED_PARTIAL, stream.ts), decoded and bounded,
//   before the engine classifies it (src/core/provider-errors.ts, which stays free of node: imports). Synchronous zlib:
//   the input is at most MAX_ERROR_BODY_BYTES and so is the output, a few microseconds. Never throws: an unknown coding
//   or a body that does not decode is "no readable body", and the status alone decides, as without a body.
// keypool only reads: the client receives the provider's bytes unchanged, compressed as they came.
import {
  brotliDecompressSync,
  constants,
  createBrotliDecompress,
  createGunzip,
  createInflate,
  gunzipSync,
  inflateRawSync,
  inflateSync,
  type BrotliDecompress,
  type Gunzip,
  type Inflate,
  type ZlibOptions,
} from 'node:zlib';
import { MAX_ERROR_BODY_BYTES } from '../../core/provider-errors.js';
import type { HeaderBag } from '../../core/types.js';

/** A content coding keypool reads. */
export type ContentCoding = 'identity' | 'gzip' | 'deflate' | 'br';

/**
 * The body's coding from its Content-Encoding header; null for one keypool does not read (unknown, or several codings
 * stacked, which providers do not send).
 */
export function contentCodingOf(headers: HeaderBag): ContentCoding | null {
  const value = headers['content-encoding'];
  if (value !== undefined && typeof value !== 'string') return value.length === 0 ? 'identity' : null;
  switch ((value ?? '').trim().toLowerCase()) {
    case '':
    case 'identity':
      return 'identity';
    case 'gzip':
    case 'x-gzip':
      return 'gzip';
    case 'deflate':
      return 'deflate';
    case 'br':
      return 'br';
    default:
      return null;
  }
}

/**
 * Most decoded bytes of an error body. The classifier reads MAX_ERROR_BODY_BYTES and parses them as JSON: a body that
 * decodes to more would be cut mid-document and never parse, so it is no readable body. zlib's maxOutputLength stops
 * the decoder there, so a small compressed body cannot expand into memory (a decompression bomb).
 */
export const MAX_DECODED_ERROR_BODY_BYTES = MAX_ERROR_BODY_BYTES;

// A body may be cut (BUFFERED_PARTIAL at Envoy's buffer limit; a client gone mid-stream): flush what the cut stream
// holds at its end instead of failing on the missing trailer (a gzip body cut in its 8-byte trailer decodes whole).
const ZLIB_CUT_FLUSH = { finishFlush: constants.Z_SYNC_FLUSH };
const BROTLI_CUT_FLUSH = { finishFlush: constants.BROTLI_OPERATION_FLUSH };
const ZLIB_OPTIONS: ZlibOptions = { ...ZLIB_CUT_FLUSH, maxOutputLength: MAX_DECODED_ERROR_BODY_BYTES };
const BROTLI_OPTIONS = { ...BROTLI_CUT_FLUSH, maxOutputLength: MAX_DECODED_ERROR_BODY_BYTES };

/** A streaming decompressor (usage-observer.ts). */
export type StreamDecoder = Gunzip | Inflate | BrotliDecompress;

/** A streaming decompressor for `coding` that flushes a cut body at its end; null for identity, undefined for one keypool does not read. */
export function streamDecoderFor(coding: ContentCoding | null): StreamDecoder | null | undefined {
  switch (coding) {
    case 'identity':
      return null;
    case 'gzip':
      return createGunzip(ZLIB_CUT_FLUSH);
    case 'deflate':
      return createInflate(ZLIB_CUT_FLUSH);
    case 'br':
      return createBrotliDecompress(BROTLI_CUT_FLUSH);
    case null:
      return undefined;
  }
}

/**
 * The error body as the classifier reads it: at most MAX_ERROR_BODY_BYTES of the raw bytes, decoded per `headers`'
 * Content-Encoding into at most MAX_DECODED_ERROR_BODY_BYTES; undefined when there is no body, its coding is unknown,
 * it does not decode, or it decodes to more than the bound.
 */
export function readableErrorBody(body: Uint8Array | undefined, headers: HeaderBag): Uint8Array | undefined {
  if (body === undefined) return undefined;
  const raw = body.length > MAX_ERROR_BODY_BYTES ? body.subarray(0, MAX_ERROR_BODY_BYTES) : body;
  const coding = contentCodingOf(headers);
  if (coding === 'identity') return raw;
  if (coding === null || raw.length === 0) return undefined;
  try {
    switch (coding) {
      case 'gzip':
        return gunzipSync(raw, ZLIB_OPTIONS);
      case 'deflate':
        // RFC 9110 says zlib-wrapped; some servers send raw deflate (RFC 1951). The zlib header tells them apart.
        return hasZlibHeader(raw) ? inflateSync(raw, ZLIB_OPTIONS) : inflateRawSync(raw, ZLIB_OPTIONS);
      case 'br':
        return brotliDecompressSync(raw, BROTLI_OPTIONS);
    }
  } catch {
    // Not what the header says, or over the bound (ERR_BUFFER_TOO_LARGE): nothing readable.
    return undefined;
  }
}

/** RFC 1950: compression method 8 (deflate) in the low nibble of CMF, and CMF*256+FLG a multiple of 31. */
function hasZlibHeader(bytes: Uint8Array): boolean {
  if (bytes.length < 2) return false;
  const cmf = bytes[0]!;
  const flg = bytes[1]!;
  return (cmf & 0x0f) === 8 && (cmf >> 4) <= 7 && ((cmf << 8) | flg) % 31 === 0;
}
