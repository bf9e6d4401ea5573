// What providers' error bodies say (real shapes from their docs), and how the verdict corrects the observation.
import { describe, expect, it } from 'vitest';
import { classifyProviderError, correctedObservation, MAX_ERROR_BODY_BYTES, wantsErrorBody, type ProviderErrorVerdict } from '../../src/core/provider-errors.js';
import { observeResponse } from '../../src/core/response.js';

const bytes = (value: unknown) => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
const NOW = Date.parse('2030-01-01T00:00:00Z');

describe('classifyProviderError', () => {
  it.each<[string, number, unknown, ProviderErrorVerdict]>([
    ['OpenAI insufficient_quota (429)', 429, { error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } }, 'quota_exhausted'],
    ['OpenAI rate limit (429)', 429, { error: { message: 'Rate limit reached for gpt-4o', type: 'requests', param: null, code: 'rate_limit_exceeded' } }, 'unknown'],
    ['OpenAI billing hard limit (400)', 400, { error: { code: 'billing_hard_limit_reached', message: 'Billing hard limit has been reached' } }, 'quota_exhausted'],
    ['Gemini API_KEY_INVALID (400)', 400, { error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT', details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com' }] } }, 'invalid_credential'],
    ['Gemini streaming array form', 400, [{ error: { code: 400, status: 'INVALID_ARGUMENT', message: 'x', details: [{ reason: 'API_KEY_INVALID' }] } }], 'invalid_credential'],
    ['Gemini other 400', 400, { error: { code: 400, message: 'Invalid JSON payload received.', status: 'INVALID_ARGUMENT' } }, 'unknown'],
    ['OpenAI model_not_found (404)', 404, { error: { message: 'The model `gpt-5` does not exist or you do not have access to it.', type: 'invalid_request_error', param: null, code: 'model_not_found' } }, 'model_unavailable'],
    ['OpenAI model_not_found (403)', 403, { error: { message: 'Project does not have access to model o1', type: 'invalid_request_error', code: 'model_not_found' } }, 'model_unavailable'],
    ['Azure DeploymentNotFound (404)', 404, { error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist.' } }, 'model_unavailable'],
    ['Anthropic not_found_error about a model, the request model not known (404)', 404, { type: 'error', error: { type: 'not_found_error', message: 'model: claude-9' } }, 'unknown'],
    ['a 404 about something else', 404, { error: { message: 'Invalid URL (POST /v1/chat/completion)', type: 'invalid_request_error' } }, 'unknown'],
    ['OpenAI context length (400)', 400, { error: { message: "This model's maximum context length is 128000 tokens.", type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } }, 'client_problem'],
    ['OpenAI content policy (400)', 400, { error: { message: 'Your request was rejected as a result of our safety system.', type: 'invalid_request_error', code: 'content_policy_violation' } }, 'client_problem'],
    ['Azure content filter (400)', 400, { error: { code: 'content_filter', message: 'The response was filtered', status: 400 } }, 'client_problem'],
    ['Anthropic prompt too long (400)', 400, { type: 'error', error: { type: 'invalid_request_error', message: 'prompt is too long: 210000 tokens > 200000 maximum' } }, 'client_problem'],
    ['OpenAI invalid key (401)', 401, { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } }, 'unknown'],
    ['not JSON', 429, 'upstream connect error', 'unknown'],
    ['JSON without error', 429, { message: 'slow down' }, 'unknown'],
    ['error is a string', 400, { error: 'bad' }, 'unknown'],
    ['a 200 is never read', 200, { error: { code: 'insufficient_quota' } }, 'unknown'],
    ['a 500 is never read', 500, { error: { code: 'insufficient_quota' } }, 'unknown'],
  ])('%s', (_label, status, body, expected) => {
    expect(classifyProviderError(status, bytes(body))).toBe(expected);
  });

  // A 404's message often echoes what the client sent: only the provider's own words for "this model is not found",
  // naming the request's model, take a model off an account (else one client could take it from every tenant).
  it.each<[string, number, unknown, string | null, ProviderErrorVerdict]>([
    ['Anthropic not_found_error naming the request model', 404, { type: 'error', error: { type: 'not_found_error', message: 'model: claude-9' } }, 'claude-9', 'model_unavailable'],
    ['Anthropic not_found_error naming another model', 404, { type: 'error', error: { type: 'not_found_error', message: 'model: claude-9' } }, 'claude-3', 'unknown'],
    ['Anthropic not_found_error, model unknown', 404, { type: 'error', error: { type: 'not_found_error', message: 'model: claude-9' } }, null, 'unknown'],
    ['Gemini NOT_FOUND naming the request model', 404, { error: { code: 404, message: 'models/gemini-9 is not found for API version v1beta', status: 'NOT_FOUND' } }, 'gemini-9', 'model_unavailable'],
    ['Gemini NOT_FOUND naming another model', 404, { error: { code: 404, message: 'models/gemini-9 is not found for API version v1beta', status: 'NOT_FOUND' } }, 'gemini-pro', 'unknown'],
    ['OpenAI wrong path that contains "model"', 404, { error: { message: 'Invalid URL (POST /v1/model)', type: 'invalid_request_error', param: null, code: null } }, 'gpt-4o', 'unknown'],
    ['OpenAI wrong path that contains the model name', 404, { error: { message: 'Invalid URL (POST /v1/gpt-4o)', type: 'invalid_request_error', param: null, code: null } }, 'gpt-4o', 'unknown'],
    ['a 404 whose free text talks about the model', 404, { error: { message: 'The model gpt-4o does not exist', type: 'invalid_request_error' } }, 'gpt-4o', 'unknown'],
    ['OpenAI model_not_found names its own model (explicit code)', 404, { error: { message: 'The model `gpt-5` does not exist', type: 'invalid_request_error', code: 'model_not_found' } }, 'gpt-5', 'model_unavailable'],
    ['unsupported_model on a 400: the endpoint, not the account', 400, { error: { message: 'This model is not supported on this endpoint', type: 'invalid_request_error', code: 'unsupported_model' } }, 'gpt-4o', 'client_problem'],
  ])('%s (request model %s)', (_label, status, body, model, expected) => {
    expect(classifyProviderError(status, bytes(body), model)).toBe(expected);
  });

  it('an absent or empty body says nothing', () => {
    expect(classifyProviderError(429, undefined)).toBe('unknown');
    expect(classifyProviderError(429, new Uint8Array(0))).toBe('unknown');
  });

  it('reads at most MAX_ERROR_BODY_BYTES (a longer body is cut, so unparsable: unknown)', () => {
    const body = bytes({ error: { code: 'insufficient_quota', pad: 'x'.repeat(MAX_ERROR_BODY_BYTES) } });
    expect(classifyProviderError(429, body)).toBe('unknown');
  });

  it.each([[400, true], [401, true], [402, true], [403, true], [404, true], [429, true], [200, false], [409, false], [500, false]])(
    'wantsErrorBody(%i) -> %s',
    (status, expected) => expect(wantsErrorBody(status)).toBe(expected),
  );
});

describe('correctedObservation', () => {
  const observed = (status: number) => observeResponse('openai', status, { 'retry-after': '5', 'x-ratelimit-remaining-requests': '7' }, NOW);
  it.each<[number, ProviderErrorVerdict, string, number | null]>([
    [429, 'quota_exhausted', 'quota_exhausted', null],
    [400, 'invalid_credential', 'invalid_credential', null],
    [403, 'model_unavailable', 'client_error', null],
    [404, 'model_unavailable', 'client_error', null],
    [400, 'client_problem', 'client_error', null],
    [429, 'unknown', 'rate_limited', NOW + 5_000],
    [401, 'unknown', 'invalid_credential', null],
  ])('%i + %s -> %s', (status, verdict, outcome, cooldownUntilMs) => {
    const corrected = correctedObservation(observed(status), verdict);
    expect(corrected.outcome).toBe(outcome);
    expect(corrected.cooldownUntilMs).toBe(cooldownUntilMs);
    // What the headers said is kept.
    expect(corrected.learned.requestsRemaining).toBe(7);
  });
});
