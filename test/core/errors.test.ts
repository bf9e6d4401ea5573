import { describe, expect, it } from 'vitest';
import { DENY_SPECS, deny, errorShapeFor, inProviderShape, retryAfterSeconds } from '../../src/core/errors.js';
import type { DenyCode } from '../../src/core/types.js';

describe('deny table', () => {
  it.each<[DenyCode, number, string]>([
    ['missing_api_key', 401, 'authentication_error'],
    ['invalid_api_key', 401, 'authentication_error'],
    ['key_revoked', 401, 'authentication_error'],
    ['key_expired', 401, 'authentication_error'],
    ['ip_not_allowed', 403, 'permission_error'],
    ['unknown_provider', 503, 'api_error'],
    ['pool_exhausted', 429, 'rate_limit_error'],
    ['no_healthy_account', 503, 'api_error'],
    ['state_unavailable', 503, 'api_error'],
    ['keypool_unavailable', 503, 'api_error'],
  ])('%s -> %d %s with an OpenAI-shaped body', (code, status, type) => {
    const denial = deny(code);
    expect(denial).toMatchObject({ kind: 'deny', status, code, message: DENY_SPECS[code].defaultMessage });
    expect(JSON.parse(denial.body)).toEqual({ error: { type, code, message: DENY_SPECS[code].defaultMessage } });
    expect(denial.audit).toBeUndefined();
  });

  it('says what unknown_provider means', () => {
    expect(DENY_SPECS.unknown_provider.defaultMessage).toMatch(/provider/);
  });

  it('reuses one precomputed denial for the fixed-message cases', () => {
    expect(deny('invalid_api_key')).toBe(deny('invalid_api_key'));
    expect(Object.isFrozen(deny('invalid_api_key'))).toBe(true);
    expect(deny('invalid_api_key').headers).toEqual([]);
  });
});

describe('deny options', () => {
  it('replaces the message in both the field and the JSON body (escaped)', () => {
    const denial = deny('unknown_provider', { message: 'No pool for "x"\n' });
    expect(denial.message).toBe('No pool for "x"\n');
    expect(JSON.parse(denial.body).error).toEqual({ type: 'api_error', code: 'unknown_provider', message: 'No pool for "x"\n' });
  });

  it.each<[number, string]>([
    [30, '30'],
    [1.2, '2'],
    [0, '1'],
    [-5, '1'],
    [Number.NaN, '1'],
  ])('retryAfterSec %d -> retry-after %s', (seconds, header) => {
    expect(deny('no_healthy_account', { retryAfterSec: seconds }).headers).toEqual([['retry-after', header]]);
  });

  it('429 always carries a retry-after, at least 1', () => {
    expect(deny('pool_exhausted').headers).toEqual([['retry-after', '1']]);
    expect(deny('pool_exhausted', { retryAfterSec: 12 }).headers).toEqual([['retry-after', '12']]);
  });

  it('attaches the audit record', () => {
    const denial = deny('ip_not_allowed', { audit: { keyId: 'k1', action: 'denied_ip' } });
    expect(denial.audit).toEqual({ keyId: 'k1', action: 'denied_ip' });
    expect(denial.status).toBe(403);
    expect(denial.body).toBe(deny('ip_not_allowed').body);
  });
});

describe('retryAfterSeconds', () => {
  it.each<[number | null, number]>([
    [null, 1],
    [1_000, 1], // already passed
    [10_000, 1], // now
    [10_001, 1],
    [11_000, 1],
    [11_001, 2],
    [40_000, 30],
    [10_000 + 86_400_000, 86_400],
  ])('retryAtMs %j at nowMs 10000 -> %d', (retryAtMs, seconds) => {
    expect(retryAfterSeconds(retryAtMs, 10_000)).toBe(seconds);
  });
});

describe('provider-shaped error bodies', () => {
  it.each<[string, 'openai' | 'anthropic' | 'google']>([
    ['openai', 'openai'],
    ['azure', 'openai'],
    ['none', 'openai'],
    ['anthropic', 'anthropic'],
    ['gemini', 'google'],
  ])('dialect %s answers in the %s shape', (dialect, shape) => {
    expect(errorShapeFor(dialect as never)).toBe(shape);
  });

  it.each<[DenyCode, number, string, string]>([
    ['missing_api_key', 401, 'authentication_error', 'UNAUTHENTICATED'],
    ['invalid_api_key', 401, 'authentication_error', 'UNAUTHENTICATED'],
    ['key_revoked', 401, 'authentication_error', 'UNAUTHENTICATED'],
    ['key_expired', 401, 'authentication_error', 'UNAUTHENTICATED'],
    ['ip_not_allowed', 403, 'permission_error', 'PERMISSION_DENIED'],
    ['pool_exhausted', 429, 'rate_limit_error', 'RESOURCE_EXHAUSTED'],
    ['no_healthy_account', 503, 'overloaded_error', 'UNAVAILABLE'],
    ['unknown_provider', 503, 'api_error', 'UNAVAILABLE'],
    ['state_unavailable', 503, 'api_error', 'UNAVAILABLE'],
    ['keypool_unavailable', 503, 'api_error', 'UNAVAILABLE'],
  ])('%s: %i, Anthropic %s, Google %s; keypool code kept; status and headers unchanged', (code, status, anthropicType, googleStatus) => {
    const original = deny(code, { retryAfterSec: 7 });
    const message = DENY_SPECS[code].defaultMessage;
    const anthropic = inProviderShape(original, 'anthropic');
    expect(JSON.parse(anthropic.body)).toEqual({ type: 'error', error: { type: anthropicType, message, code } });
    expect({ status: anthropic.status, headers: anthropic.headers }).toEqual({ status, headers: original.headers });
    const google = inProviderShape(original, 'gemini');
    expect(JSON.parse(google.body)).toEqual({
      error: {
        code: status,
        message,
        status: googleStatus,
        details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: code.toUpperCase(), domain: 'keypool' }],
      },
    });
    expect(inProviderShape(original, 'openai')).toBe(original);
  });

  it('carries a custom message into the provider shape', () => {
    const custom = deny('invalid_api_key', { message: 'Malformed authorization header.' });
    expect(JSON.parse(inProviderShape(custom, 'anthropic').body).error.message).toBe('Malformed authorization header.');
    expect(JSON.parse(inProviderShape(custom, 'gemini').body).error.message).toBe('Malformed authorization header.');
  });
});
