// The token estimate a request reserves at admission (exact TPM by reserve-and-reconcile, src/core/token-window.ts).
// Pure: no I/O, no clock.
//
// Input: UTF-8 bytes / 4, rounded up. OpenAI's rule of thumb for English is ~4 characters per token; JSON syntax,
// role names and base64 images make bytes/4 an over-estimate more often than not, which is the safe side for a
// reservation (reconcile gives the difference back once the provider reports its usage). A real tokenizer would cost
// milliseconds per request on the decision path and still only know one provider's vocabulary.
// Output: the request's own cap (max_tokens, max_completion_tokens, max_output_tokens, Gemini's maxOutputTokens),
// else `defaultOutputTokens` (the setting tokens.default_output).

/** tokens.default_output when the setting is not set: a typical completion cap. */
export const DEFAULT_OUTPUT_TOKENS = 1_024;

/** Bytes per estimated input token. */
export const BYTES_PER_TOKEN = 4;

/**
 * Upper bound of an output cap read from a body (a client writing max_tokens: 1e12 must not reserve a whole day's
 * quota as a number the stores cannot hold); larger caps count as this.
 */
export const MAX_OUTPUT_TOKENS = 10_000_000;

// A key is only ever unescaped in JSON when it is a key: inside a string value its quotes are escaped (\"). Digits
// only: an object under such a name (a tool schema property) is not a cap.
const OUTPUT_CAP = /"(?:max_tokens|max_completion_tokens|max_output_tokens|maxOutputTokens)"\s*:\s*(\d{1,15})/g;

const DECODER = new TextDecoder('utf-8', { fatal: false });

/** The largest output cap the body names (conservative when several do), or null when it names none. */
export function outputCapOf(text: string): number | null {
  let cap: number | null = null;
  for (const match of text.matchAll(OUTPUT_CAP)) {
    const value = Math.min(Number(match[1]), MAX_OUTPUT_TOKENS);
    if (cap === null || value > cap) cap = value;
  }
  return cap;
}

/**
 * Estimated tokens of a request: ceil(body bytes / BYTES_PER_TOKEN) + its output cap (or defaultOutputTokens). At
 * least 1. `declaredBytes` (the request's content-length, when the client sent one) counts when larger than the bytes
 * passed: a body the gateway cut at its buffer limit (or did not pass at all) is still counted whole. A body that is
 * neither passed nor declared counts as no input, only the output.
 */
export function estimateRequestTokens(body: Uint8Array | string | null | undefined, defaultOutputTokens: number, declaredBytes?: number | null): number {
  const fallback = Number.isFinite(defaultOutputTokens) && defaultOutputTokens > 0 ? Math.floor(defaultOutputTokens) : 0;
  const declared = declaredBytes != null && Number.isFinite(declaredBytes) && declaredBytes > 0 ? declaredBytes : 0;
  if (body === null || body === undefined || body.length === 0) return Math.max(1, Math.ceil(declared / BYTES_PER_TOKEN) + fallback);
  const text = typeof body === 'string' ? body : DECODER.decode(body);
  // Buffer.byteLength counts without encoding (~0.1 ns/byte; a JavaScript loop costs 2 ns/byte).
  const bytes = Math.max(typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.length, declared);
  const input = Math.ceil(bytes / BYTES_PER_TOKEN);
  return Math.max(1, input + (outputCapOf(text) ?? fallback));
}

/** The content-length header as a byte count, or null when absent, repeated or not a plain non-negative integer. */
export function declaredBodyBytes(contentLength: string | readonly string[] | undefined): number | null {
  if (typeof contentLength !== 'string' || !/^\d{1,15}$/.test(contentLength)) return null;
  return Number(contentLength);
}
