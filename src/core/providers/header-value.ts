// Reading one response header value from a HeaderBag, whatever shape the codec produced.
import type { HeaderBag } from '../types.js';

/** First value of a header (repeated headers arrive as arrays), trimmed; undefined when absent or empty. */
export function headerValue(headers: HeaderBag, name: string): string | undefined {
  const raw = headers[name];
  const value = typeof raw === 'string' ? raw : Array.isArray(raw) ? raw[0] : undefined;
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  return trimmed.length === 0 ? undefined : trimmed;
}

const COUNT = /^\d{1,15}(?:\.\d+)?$/;

/** A non-negative count (limit or remaining); anything else (negative, text, huge) is ignored as null. */
export function countHeader(headers: HeaderBag, name: string): number | null {
  const value = headerValue(headers, name);
  if (value === undefined || !COUNT.test(value)) return null;
  return Math.floor(Number(value));
}
