// Reading an admin request body: bounded in size (413 past the limit), JSON only (415 otherwise), parsed once.
// A state-changing request must say `content-type: application/json` even with an empty body: an HTML form can
// only send form or text types, so this is what keeps a cross-site form POST (CSRF) from reaching any route.
import type { IncomingMessage } from 'node:http';
import { HttpError, badRequest } from './http-errors.js';

export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024;

const JSON_CONTENT_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/;

/**
 * Reads and parses the body; undefined when there is none. Stops reading as soon as the limit is passed.
 * `requireJson`: the JSON content type is required even without a body (state-changing methods).
 */
export async function readJsonBody(req: IncomingMessage, limitBytes: number, requireJson: boolean): Promise<unknown> {
  const contentType = (req.headers['content-type'] ?? '').toLowerCase();
  if (requireJson && !JSON_CONTENT_TYPE.test(contentType)) throw unsupportedMediaType();
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limitBytes) throw tooLarge(limitBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) throw tooLarge(limitBytes);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  if (!JSON_CONTENT_TYPE.test(contentType)) throw unsupportedMediaType();
  const text = Buffer.concat(chunks, size).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    // JSON.parse messages quote a window of the input; a mistyped body may hold a secret, so only the position is said.
    const at = /position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
    throw badRequest('invalid_json', `the body is not valid JSON${at === undefined ? '' : ` (near byte ${at})`}`, 'body');
  }
}

function unsupportedMediaType(): HttpError {
  return new HttpError(415, 'unsupported_media_type', 'send `content-type: application/json` (with a JSON body, or none)');
}

function tooLarge(limitBytes: number): HttpError {
  return new HttpError(413, 'body_too_large', `the body exceeds ${limitBytes} bytes`, 'body', { connection: 'close' });
}
