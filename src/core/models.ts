// The request's model, and which accounts serve it. Pure: bytes and strings in, values out; never throws on input.
//
// Where the model is:
//   Azure OpenAI   /openai/deployments/{deployment}/chat/completions?api-version=...   (the deployment names it)
//   Gemini         /v1beta/models/{model}:generateContent, /v1/models/{model}:streamGenerateContent, ...
//   everything else (OpenAI, Anthropic, OpenRouter, Groq, OpenAI-compatible): the JSON body's top-level `model`
// A path that names the model needs no body; only pools that need the model (ProviderPool.needsModel) ask for one.

/**
 * Largest request body keypool reads for its model; the gateway's buffer limit applies first (Envoy: the listener's
 * per_connection_buffer_limit_bytes, default 1 MiB; with ext_proc as an upstream filter, the route's
 * request_body_buffer_limit). A body over either is refused with 400 invalid_request on pools that need the model,
 * never forwarded with the client key. Pools that do not need the model never buffer, whatever the size.
 */
export const MAX_MODEL_BODY_BYTES = 1_048_576;
/** Longest model name taken from a request (longer: invalid_request). Account patterns stop at 128 + `*`. */
export const MAX_MODEL_CHARS = 256;

export type ModelLookup =
  | { readonly kind: 'model'; readonly model: string }
  /** The path does not say; the body's `model` does (read it with modelFromBody). */
  | { readonly kind: 'in_body' }
  /**
   * The request has no body (GET /v1/models, DELETE /v1/files/x): it is not about a model, so any account of the pool
   * may serve it. Distinct from a body that was not read (undefined: refused, keypool fails closed).
   */
  | { readonly kind: 'none' }
  /** The request cannot name a model keypool can use; `reason` reaches the client (no secrets in it). */
  | { readonly kind: 'invalid'; readonly reason: string };

/** What a body says: never `in_body`. */
export type BodyModel = Exclude<ModelLookup, { readonly kind: 'in_body' }>;

// Searched anywhere in the path (not the query): a gateway route may put a prefix in front (`/azure/openai/...`,
// `/gemini/v1beta/...`) that it strips before the upstream.
const AZURE_DEPLOYMENT = /\/openai\/deployments\/([^/#]+)(?:[/#]|$)/;
const GEMINI_MODEL = /\/v1(?:beta\d*|alpha\d*)?\/(?:projects\/[^/#]+\/locations\/[^/#]+\/publishers\/google\/)?models\/([^/#:]+)(?::[A-Za-z]+)?(?:[/#]|$)/;
/** Printable ASCII without space; what a model name or deployment may be (checked after percent-decoding). */
const MODEL_CHARS = /^[\x21-\x7e]+$/;

/** The model a request's `:path` names, or that it is in the body. */
export function modelFromPath(path: string | undefined): ModelLookup {
  if (path === undefined || path === '') return IN_BODY;
  const query = path.indexOf('?');
  const pathOnly = query < 0 ? path : path.slice(0, query);
  const match = AZURE_DEPLOYMENT.exec(pathOnly) ?? GEMINI_MODEL.exec(pathOnly);
  if (match === null) return IN_BODY;
  return checkedModel(decodeSegment(match[1]!));
}

/**
 * The top-level `model` of a JSON request body. `truncated`: the body did not fit the limit (refused). An empty body
 * (the gateway read it: there is none) names no model; an absent one (never read) is refused.
 */
export function modelFromBody(bytes: Uint8Array | undefined, truncated: boolean): BodyModel {
  if (truncated || (bytes !== undefined && bytes.length > MAX_MODEL_BODY_BYTES)) {
    return TOO_LARGE;
  }
  if (bytes === undefined) return NO_BODY;
  if (bytes.length === 0) return NONE;
  let parsed: unknown;
  try {
    parsed = JSON.parse(UTF8.decode(bytes));
  } catch {
    return NOT_JSON;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return NOT_JSON;
  const model = (parsed as Record<string, unknown>)['model'];
  if (typeof model !== 'string') return NO_MODEL;
  return checkedModel(model);
}

/** Invalid UTF-8 becomes U+FFFD (then usually fails JSON.parse or the name check): a value, never a throw. */
const UTF8 = new TextDecoder('utf-8');
const IN_BODY: ModelLookup = Object.freeze({ kind: 'in_body' });
const TOO_LARGE: BodyModel = Object.freeze({
  kind: 'invalid',
  reason: `The request body is larger than keypool reads to find its model (the gateway's buffer limit, at most ${MAX_MODEL_BODY_BYTES} bytes).`,
});
const NONE: BodyModel = Object.freeze({ kind: 'none' });
const NO_BODY: BodyModel = Object.freeze({ kind: 'invalid', reason: 'keypool did not get the request body, so it cannot tell its model.' });
const NOT_JSON: BodyModel = Object.freeze({ kind: 'invalid', reason: 'The request body is not a JSON object.' });
const NO_MODEL: BodyModel = Object.freeze({ kind: 'invalid', reason: 'The request body has no "model" string.' });
const BAD_MODEL: BodyModel = Object.freeze({
  kind: 'invalid',
  reason: `The model name must be 1-${MAX_MODEL_CHARS} printable characters without spaces.`,
});

function checkedModel(model: string | null): BodyModel {
  if (model === null || model.length === 0 || model.length > MAX_MODEL_CHARS || !MODEL_CHARS.test(model)) return BAD_MODEL;
  return { kind: 'model', model };
}

function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Which models an account serves
// ---------------------------------------------------------------------------------------------

/** Serves every model: the matcher of an account without a `models` list. */
export const SERVES_ANY_MODEL = (_model: string): boolean => true;

/**
 * Compiles an account's `models` (exact names and `prefix*` globs, src/catalog/rules.ts MODEL_PATTERN) once per
 * snapshot into a name set and a prefix list: a request costs one set lookup and a few startsWith, no regex.
 * An empty list serves any model.
 */
export function compileModelMatcher(patterns: readonly string[]): (model: string) => boolean {
  if (patterns.length === 0) return SERVES_ANY_MODEL;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const pattern of patterns) {
    if (pattern.endsWith('*')) prefixes.push(pattern.slice(0, -1));
    else exact.add(pattern);
  }
  if (prefixes.length === 0) return (model) => exact.has(model);
  return (model) => {
    if (exact.has(model)) return true;
    for (let i = 0; i < prefixes.length; i += 1) if (model.startsWith(prefixes[i]!)) return true;
    return false;
  };
}
