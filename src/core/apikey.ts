// Client (system) API keys: where a request carries one, what a well-formed one looks like, and how it
// is digested for lookup. keypool never stores a client key, only HMAC-SHA256(pepper, key).
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import type { HeaderBag } from './types.js';

/**
 * Headers searched for the client key when neither the route nor the engine configures a list: where the OpenAI
 * (authorization), Anthropic (x-api-key), Azure (api-key) and Gemini (x-goog-api-key) SDKs send their key.
 */
export const DEFAULT_KEY_HEADERS: readonly string[] = Object.freeze(['authorization', 'x-api-key', 'api-key', 'x-goog-api-key']);

/**
 * Every request header a supported provider reads as a credential (bearer, x-api-key, api-key, x-goog-api-key
 * styles), plus proxy-authorization. Whatever headers carry the keypool key, every one of these that the client sent
 * is removed upstream before the pooled credential is set: a client key, or a client's own provider key, never
 * reaches the provider.
 */
export const CLIENT_CREDENTIAL_HEADERS: readonly string[] = Object.freeze([
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
]);

/** The configured key headers the client used, plus every CLIENT_CREDENTIAL_HEADERS name present in `headers`. */
export function credentialHeadersIn(headers: HeaderBag, keyHeadersPresent: readonly string[]): string[] {
  const names = [...keyHeadersPresent];
  for (const name of CLIENT_CREDENTIAL_HEADERS) {
    if (headers[name] !== undefined && !names.includes(name)) names.push(name);
  }
  return names;
}

/** Shape of keys keypool generates: `kp_` + base62 (40 chars today; at least 32 accepted on import). */
export const CLIENT_KEY_PATTERN = /^kp_[0-9A-Za-z]{32,}$/;

/** Longest key accepted, in UTF-8 bytes: bounds digest and pattern-matching work per request. */
export const MAX_CLIENT_KEY_BYTES = 512;

/** Length of the display prefix stored beside the digest: `kp_` + 8 characters, enough to tell keys apart. */
export const KEY_DISPLAY_PREFIX_LENGTH = 11;

export type KeyExtraction =
  | { readonly ok: true; readonly key: string; readonly credentialHeaders: string[] }
  | { readonly ok: false; readonly code: 'missing_api_key' | 'invalid_api_key'; readonly message: string };

type ValueResult = { readonly key: string } | { readonly error: string };

// Whitespace anywhere (incl. Unicode spaces), C0/C1 control characters and DEL. A key never contains them,
// and a value that does is either an attack on header parsing or a copy-paste accident.
const FORBIDDEN_KEY_CHARACTER = /[\s\u0000-\u001f\u007f-\u009f]/;
const BEARER_SCHEME = /^bearer$/i;

/**
 * Finds the client key among the configured headers. Every configured header that is present is
 * returned in credentialHeaders so the adapter strips all of them, not only the one that was used.
 * The same key in several headers is fine; different keys are ambiguous and refused.
 */
export function extractClientKey(headers: HeaderBag, keyHeaders: readonly string[]): KeyExtraction {
  let key: string | null = null;
  const credentialHeaders: string[] = [];
  for (const configuredName of keyHeaders) {
    const name = configuredName.toLowerCase();
    const raw: unknown = headers[name];
    if (raw === undefined || credentialHeaders.includes(name)) continue;
    if (Array.isArray(raw) && raw.length === 0) continue;
    credentialHeaders.push(name);
    // Repeated headers arrive as arrays; the common single string is read without building one.
    const count = Array.isArray(raw) ? raw.length : 1;
    for (let index = 0; index < count; index++) {
      const result = keyFromHeaderValue(name, Array.isArray(raw) ? raw[index] : raw);
      if ('error' in result) return invalid(result.error);
      if (key !== null && key !== result.key) return invalid('Conflicting API keys in the request headers.');
      key = result.key;
    }
  }
  if (key === null) return { ok: false, code: 'missing_api_key', message: missingMessage(keyHeaders) };
  return { ok: true, key, credentialHeaders };
}

function keyFromHeaderValue(name: string, value: unknown): ValueResult {
  if (typeof value !== 'string') return { error: `Malformed ${name} header.` };
  // Optional whitespace around a field value is not part of it (RFC 9110 section 5.5).
  const trimmed = trimOptionalWhitespace(value);
  if (name === 'authorization') return keyFromAuthorization(trimmed);
  return checkedKey(trimmed, name);
}

function trimOptionalWhitespace(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isSpaceOrTab(value.charCodeAt(start))) start++;
  while (end > start && isSpaceOrTab(value.charCodeAt(end - 1))) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function isSpaceOrTab(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

function keyFromAuthorization(value: string): ValueResult {
  const spaceAt = value.indexOf(' ');
  const scheme = spaceAt === -1 ? value : value.slice(0, spaceAt);
  if (!BEARER_SCHEME.test(scheme)) return { error: 'Malformed authorization header: expected "Bearer <key>".' };
  if (spaceAt === -1) return { error: 'Malformed authorization header: "Bearer" without a key.' };
  return checkedKey(trimOptionalWhitespace(value.slice(spaceAt)), 'authorization');
}

function checkedKey(key: string, name: string): ValueResult {
  if (key.length === 0) return { error: `Empty API key in the ${name} header.` };
  if (utf8ByteLengthExceeds(key, MAX_CLIENT_KEY_BYTES)) return { error: 'API key is too long.' };
  if (FORBIDDEN_KEY_CHARACTER.test(key)) return { error: 'API key contains whitespace or control characters.' };
  return { key };
}

// A UTF-16 unit is at most 3 UTF-8 bytes, so short strings skip the exact count.
function utf8ByteLengthExceeds(text: string, maxBytes: number): boolean {
  if (text.length * 3 <= maxBytes) return false;
  if (text.length > maxBytes) return true;
  return Buffer.byteLength(text, 'utf8') > maxBytes;
}

function invalid(message: string): KeyExtraction {
  return { ok: false, code: 'invalid_api_key', message };
}

function missingMessage(keyHeaders: readonly string[]): string {
  if (keyHeaders.length === 0) return 'Missing API key.';
  const where = keyHeaders.map((name) => (name.toLowerCase() === 'authorization' ? 'Authorization: Bearer <key>' : name));
  return `Missing API key. Send it in one of: ${where.join(', ')}.`;
}

/** HMAC-SHA256(pepper, key) as lower-case hex: the only form in which a client key is stored or looked up. */
export function digestKey(pepper: Uint8Array, key: string): string {
  return createHmac('sha256', pepper).update(key, 'utf8').digest('hex');
}

/**
 * Returns a digest function bound to one pepper, importing the pepper as a KeyObject once
 * (what a Snapshot's digestKey should be built from: no per-request key import).
 */
export function createKeyDigester(pepper: Uint8Array): (key: string) => string {
  const secret: KeyObject = createSecretKey(pepper);
  return (key: string) => createHmac('sha256', secret).update(key, 'utf8').digest('hex');
}

/** Non-secret prefix shown to operators to identify a key (`kp_` + 8 characters). */
export function keyDisplayPrefix(key: string): string {
  return key.slice(0, KEY_DISPLAY_PREFIX_LENGTH);
}

/**
 * Display prefix of an imported key. Its shape is the user's (`sk-...`, 16 characters at the least), so at most a
 * quarter of it is shown: enough to tell keys apart, never enough to shorten a guess meaningfully.
 */
export function importedKeyDisplayPrefix(key: string): string {
  return key.slice(0, Math.min(KEY_DISPLAY_PREFIX_LENGTH, Math.floor(key.length / 4)));
}
