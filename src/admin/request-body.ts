// Reading an admin request body: bounded in size (413 past the limit), JSON only (415 otherwise), parsed once.
import type { IncomingMessage } from 'node:http';
import { HttpError, badRequest } from './http-errors.js';

export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024;

/** Reads and parses the body; undefined when there is none. Stops reading as soon as the limit is passed. */
export async function readJsonBody(req: IncomingMessage, limitBytes: number): Promise<unknown> {
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
  const contentType = (req.headers['content-type'] ?? '').toLowerCase();
  if (!/^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/.test(contentType)) {
    throw new HttpError(415, 'unsupported_media_type', 'send the body as JSON with `content-type: application/json`');
  }
  const text = Buffer.concat(chunks, size).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    // JSON.parse messages quote a window of the input; a mistyped body may hold a secret, so only the position is said.
    const at = /position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
    throw badRequest('invalid_json', `the body is not valid JSON${at === undefined ? '' : ` (near byte ${at})`}`, 'body');
  }
}

function tooLarge(limitBytes: number): HttpError {
  return new HttpError(413, 'body_too_large', `the body exceeds ${limitBytes} bytes`, 'body', { connection: 'close' });
}
