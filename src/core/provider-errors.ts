// What a provider's error BODY says that its status cannot. Pure: status and bytes in, a verdict out; never throws.
//
// Read only for the statuses in ERROR_BODY_STATUSES (Envoy buffers those bodies for keypool, bounded; Kong cannot:
// its JS plugin server has no body phase without buffering every response). The client still gets the provider's
// answer unchanged; the verdict only changes what keypool does with the account:
//   quota_exhausted     OpenAI `insufficient_quota` (credit used up: retrying never helps) -> disable the account
//                       (and its quota-scope siblings) until an operator enables it
//   invalid_credential  Gemini 400 with reason API_KEY_INVALID -> the credential is invalid (as a 401 would say)
//   model_unavailable   a 403/404 with `model_not_found` or Azure `DeploymentNotFound`, or a 404 whose message names
//                       exactly the request's model in the provider's own words (Anthropic `model: <m>`, Gemini
//                       `models/<m> is not found`) -> that model is taken off the account for a while; the credential
//                       stays valid (a 403/404 here is NOT a bad key). Never free text: a provider's 404 echoes the
//                       path the client chose (`Invalid URL (POST /v1/model)`), and a client must not be able to take
//                       a model away from every tenant by asking for a wrong path.
//   client_problem      context length, content policy, bad request -> the client's problem; account untouched
//   unknown             nothing recognised: the status alone decides, as without a body
import type { Observation } from './types.js';

export type ProviderErrorVerdict = 'quota_exhausted' | 'invalid_credential' | 'model_unavailable' | 'client_problem' | 'unknown';

/** Statuses whose body keypool asks for (404 only for model errors: a 404 says nothing else about the account). */
export const ERROR_BODY_STATUSES: ReadonlySet<number> = new Set([400, 401, 402, 403, 404, 429]);
/** Most of an error body keypool reads; provider error bodies are well under 1 KiB. Longer: the first bytes only. */
export const MAX_ERROR_BODY_BYTES = 16_384;

/**
 * How the `disabled_reason` of an account disabled for used-up credit starts: the optional re-probe
 * (KEYPOOL_QUOTA_REPROBE_MS, src/admin/lifecycle.ts) enables exactly these accounts again, never one an operator
 * disabled.
 */
export const QUOTA_EXHAUSTED_REASON_PREFIX = 'quota_exhausted:';

export function wantsErrorBody(status: number): boolean {
  return ERROR_BODY_STATUSES.has(status);
}

const QUOTA_CODES = new Set(['insufficient_quota', 'billing_hard_limit_reached', 'billing_not_active']);
/** Codes by which a provider says the model (Azure: the deployment) is not there for this key; read on 403/404 only. */
const MODEL_CODES = new Set(['model_not_found', 'deploymentnotfound', 'model_not_available', 'unsupported_model']);
const CLIENT_CODES = new Set([
  // On a 400 these say the model does not fit the request (an endpoint it does not support), not that it is gone.
  'model_not_available',
  'unsupported_model',
  'context_length_exceeded',
  'string_above_max_length',
  'content_policy_violation',
  'content_filter',
  'invalid_prompt',
  'invalid_request_error',
]);
const KEY_REASONS = new Set(['API_KEY_INVALID']);
const UTF8 = new TextDecoder('utf-8');

/**
 * The provider's error, as far as its body says. `model`: the request's model when keypool knew it (a 404 that names
 * exactly this model is about the model).
 */
export function classifyProviderError(status: number, body: Uint8Array | undefined, model?: string | null): ProviderErrorVerdict {
  if (!wantsErrorBody(status) || body === undefined || body.length === 0) return 'unknown';
  const fields = errorFields(body.length > MAX_ERROR_BODY_BYTES ? body.subarray(0, MAX_ERROR_BODY_BYTES) : body);
  if (fields === null) return 'unknown';
  const codes = [fields.code, fields.type].filter((v): v is string => v !== null).map((v) => v.toLowerCase());
  if (codes.some((code) => QUOTA_CODES.has(code))) return 'quota_exhausted';
  if (fields.reasons.some((reason) => KEY_REASONS.has(reason))) return 'invalid_credential';
  if ((status === 403 || status === 404) && codes.some((code) => MODEL_CODES.has(code))) return 'model_unavailable';
  if (status === 404 && namesModel(fields, codes, model)) return 'model_unavailable';
  if (status === 400 && (codes.some((code) => CLIENT_CODES.has(code)) || /context length|too long|content (policy|filter)/i.test(fields.message))) {
    return 'client_problem';
  }
  return 'unknown';
}

/**
 * The observation as the body's verdict corrects it. quota_exhausted and invalid_credential hold the account out
 * (no cooldown: they are not rate limits); model_unavailable and client_problem are the request's problem, so a 403 or
 * 404 about a model no longer reads as a bad credential.
 */
export function correctedObservation(observation: Observation, verdict: ProviderErrorVerdict): Observation {
  switch (verdict) {
    case 'quota_exhausted':
    case 'invalid_credential':
      return { ...observation, outcome: verdict, cooldownUntilMs: null };
    case 'model_unavailable':
    case 'client_problem':
      return { ...observation, outcome: 'client_error', cooldownUntilMs: null };
    case 'unknown':
      return observation;
  }
}

interface ErrorFields {
  readonly code: string | null;
  readonly type: string | null;
  readonly message: string;
  /** google.rpc.ErrorInfo reasons (Gemini). */
  readonly reasons: readonly string[];
}

/**
 * OpenAI / Azure / Groq / OpenRouter: { error: { code, type, message } }; Anthropic: { type: 'error', error: { type,
 * message } }; Google: { error: { code, status, message, details: [{ reason }] } }, or that object in a one-element
 * array (streaming endpoints). Azure's own errors: { error: { code: 'DeploymentNotFound', message } }.
 */
function errorFields(body: Uint8Array): ErrorFields | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(UTF8.decode(body));
  } catch {
    return null;
  }
  if (Array.isArray(parsed)) parsed = parsed[0];
  const error = objectAt(parsed, 'error');
  if (error === null) return null;
  const details = Array.isArray(error['details']) ? (error['details'] as unknown[]) : [];
  const reasons = details.map((detail) => objectValue(detail)?.['reason']).filter((v): v is string => typeof v === 'string');
  return {
    code: stringOf(error['code']),
    type: stringOf(error['type']) ?? stringOf(error['status']),
    message: stringOf(error['message']) ?? '',
    reasons,
  };
}

/** Anthropic `not_found_error` "model: <m>", Gemini NOT_FOUND "models/<m> is not found ...", for the request's model. */
function namesModel(fields: ErrorFields, codes: readonly string[], model: string | null | undefined): boolean {
  if (model == null || model === '') return false;
  if (codes.includes('not_found_error') && fields.message === `model: ${model}`) return true;
  return codes.includes('not_found') && fields.message.startsWith(`models/${model} is not found`);
}

function objectAt(value: unknown, key: string): Record<string, unknown> | null {
  return objectValue(objectValue(value)?.[key]);
}

function objectValue(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

function stringOf(value: unknown): string | null {
  return typeof value === 'string' && value.length > 0 ? value : null;
}
