import { describe, expect, it } from 'vitest';
import { parseGoDurationMs, parseHumanDurationMs } from '../../src/core/duration.js';
import { parseAnthropicLimits, parseRfc3339Ms } from '../../src/core/providers/anthropic.js';
import { authHeaderFor } from '../../src/core/providers/auth.js';
import { learnedLimitsFor } from '../../src/core/providers/dialects.js';
import { EMPTY_LIMITS } from '../../src/core/providers/limits.js';
import { parseOpenAiLimits } from '../../src/core/providers/openai.js';
import { MAX_RETRY_AFTER_MS, parseRetryAfterMs } from '../../src/core/providers/retry-after.js';
import { MAX_REQUESTS_RESET_MS, MAX_TOKENS_RESET_MS, changesAdmission, classifyStatus, observeResponse } from '../../src/core/response.js';
import type { AuthStyle, HeaderBag, LearnedLimits, ObservationOutcome } from '../../src/core/types.js';

const NOW = 1_700_000_000_000; // 2023-11-14T22:13:20.000Z, Tue, 14 Nov 2023 22:13:20 GMT
const HOUR = 3_600_000;

describe('parseGoDurationMs', () => {
  it.each<[string, number | null]>([
    ['1s', 1_000],
    ['6m0s', 360_000],
    ['12ms', 12],
    ['2m59.56s', 179_560],
    ['1h2m3.5s', 3_723_500],
    ['2.01s', 2_010],
    ['500us', 0.5],
    ['500µs', 0.5],
    ['500μs', 0.5],
    ['1500ns', 0.0015],
    ['0', 0],
    ['0s', 0],
    ['+1s', 1_000],
    ['.5s', 500],
    ['-1s', null],
    ['', null],
    ['1', null],
    ['s', null],
    ['1x', null],
    ['1s garbage', null],
    ['1d', null],
    ['NaN', null],
    ['9'.repeat(70) + 'h', null],
  ])('%j -> %j', (text, expected) => {
    expect(parseGoDurationMs(text)).toBe(expected);
  });
});

describe('parseHumanDurationMs', () => {
  it.each<[string, number | null]>([
    ['90d', 90 * 24 * HOUR],
    ['24h', 24 * HOUR],
    ['30m', 1_800_000],
    ['45s', 45_000],
    ['500ms', 500],
    ['1h30m', 5_400_000],
    ['2d12h', 60 * HOUR],
    ['1m30s500ms', 90_500],
    ['0s', 0],
    [' 7d ', 7 * 24 * HOUR],
    ['', null],
    ['   ', null],
    ['-1d', null],
    ['+1d', null],
    ['1.5h', null],
    ['10', null],
    ['1w', null],
    ['1D', null],
    ['1 h', null],
    ['30m1h', null], // units out of order
    ['1h1h', null], // repeated unit
    ['36500d', 36_500 * 24 * HOUR],
    ['36501d', null], // beyond 100 years
    ['999999999999999d', null],
    ['9999999999999999s', null], // 16 digits
  ])('%j -> %j', (text, expected) => {
    expect(parseHumanDurationMs(text)).toBe(expected);
  });
});

describe('parseRetryAfterMs', () => {
  it.each<[string, HeaderBag, number | null]>([
    ['seconds', { 'retry-after': '120' }, 120_000], // not the year 120
    ['zero seconds', { 'retry-after': '0' }, 0],
    ['HTTP-date 90 s ahead', { 'retry-after': 'Tue, 14 Nov 2023 22:14:50 GMT' }, 90_000],
    ['RFC 850 date', { 'retry-after': 'Tuesday, 14-Nov-23 22:14:50 GMT' }, 90_000],
    ['HTTP-date in the past', { 'retry-after': 'Tue, 14 Nov 2023 22:00:00 GMT' }, 0],
    ['retry-after-ms', { 'retry-after-ms': '1500' }, 1_500],
    ['fractional retry-after-ms rounds up', { 'retry-after-ms': '12.2' }, 13],
    ['retry-after-ms wins over retry-after', { 'retry-after-ms': '250', 'retry-after': '10' }, 250],
    ['bad retry-after-ms falls back', { 'retry-after-ms': 'soon', 'retry-after': '3' }, 3_000],
    ['surrounding spaces', { 'retry-after': ' 5 ' }, 5_000],
    ['repeated header: first value', { 'retry-after': ['7', '9'] }, 7_000],
    ['absurd seconds are clamped', { 'retry-after': '999999999' }, MAX_RETRY_AFTER_MS],
    ['huge digits are clamped', { 'retry-after': '9'.repeat(400) }, MAX_RETRY_AFTER_MS],
    ['absent', {}, null],
    ['empty', { 'retry-after': '' }, null],
    ['negative', { 'retry-after': '-5' }, null],
    ['fractional seconds', { 'retry-after': '1.5' }, null],
    ['text', { 'retry-after': 'soon' }, null],
    ['loose date Date.parse would accept', { 'retry-after': 'Nov 14 2023' }, null],
    ['asctime (local-time ambiguity)', { 'retry-after': 'Tue Nov 14 22:14:50 2023' }, null],
    ['invalid date', { 'retry-after': 'Tue, 99 Nov 2023 22:14:50 GMT' }, null],
    ['negative retry-after-ms', { 'retry-after-ms': '-1' }, null],
  ])('%s', (_name, headers, expected) => {
    expect(parseRetryAfterMs(headers, NOW)).toBe(expected);
  });
});

describe('OpenAI-style headers', () => {
  const full: HeaderBag = {
    'x-ratelimit-limit-requests': '500',
    'x-ratelimit-remaining-requests': '499',
    'x-ratelimit-reset-requests': '120ms',
    'x-ratelimit-limit-tokens': '30000',
    'x-ratelimit-remaining-tokens': '29000',
    'x-ratelimit-reset-tokens': '2m59.56s',
  };
  it('reads all six headers, resets as absolute instants', () => {
    expect(parseOpenAiLimits(full, NOW)).toEqual({
      requestsLimit: 500,
      requestsRemaining: 499,
      requestsResetAtMs: NOW + 120,
      tokensLimit: 30_000,
      tokensRemaining: 29_000,
      tokensResetAtMs: NOW + 179_560,
    });
  });

  it.each<[string, number | null]>([
    ['1s', NOW + 1_000],
    ['6m0s', NOW + 360_000],
    ['12ms', NOW + 12],
    ['2m59.56s', NOW + 179_560],
    ['1h2m3.5s', NOW + 3_723_500],
    ['500us', NOW + 1], // rounded up: never release an account early
    ['0s', NOW],
    ['20', NOW + 20_000], // plain seconds from OpenAI-compatible servers
    ['0.5', NOW + 500],
    ['24h', NOW + 24 * HOUR],
    ['25h', null], // beyond a day: garbage
    ['1700000000', null], // an epoch where a duration belongs
    ['-1s', null],
    ['soon', null],
    ['', null],
  ])('reset %j -> %j', (reset, expected) => {
    expect(parseOpenAiLimits({ 'x-ratelimit-reset-tokens': reset }, NOW).tokensResetAtMs).toBe(expected);
  });

  it.each<[string, number | null]>([
    ['0', 0],
    ['42', 42],
    ['42.9', 42],
    ['-1', null],
    ['abc', null],
    ['1e3', null],
    ['', null],
    ['9'.repeat(30), null],
  ])('count %j -> %j', (value, expected) => {
    expect(parseOpenAiLimits({ 'x-ratelimit-remaining-requests': value }, NOW).requestsRemaining).toBe(expected);
  });

  it('returns the shared empty object when nothing is reported', () => {
    expect(parseOpenAiLimits({ 'content-type': 'application/json' }, NOW)).toBe(EMPTY_LIMITS);
  });
});

describe('Anthropic headers', () => {
  const reset = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();

  it('reads requests and picks the most constraining token family', () => {
    const headers: HeaderBag = {
      'anthropic-ratelimit-requests-limit': '50',
      'anthropic-ratelimit-requests-remaining': '49',
      'anthropic-ratelimit-requests-reset': '2023-11-14T22:14:20Z',
      'anthropic-ratelimit-tokens-limit': '100000',
      'anthropic-ratelimit-tokens-remaining': '90000', // 90%
      'anthropic-ratelimit-tokens-reset': reset(10_000),
      'anthropic-ratelimit-input-tokens-limit': '80000',
      'anthropic-ratelimit-input-tokens-remaining': '60000', // 75%
      'anthropic-ratelimit-input-tokens-reset': reset(20_000),
      'anthropic-ratelimit-output-tokens-limit': '16000',
      'anthropic-ratelimit-output-tokens-remaining': '4000', // 25%: the tightest
      'anthropic-ratelimit-output-tokens-reset': reset(30_000),
    };
    expect(parseAnthropicLimits(headers, NOW)).toEqual({
      requestsLimit: 50,
      requestsRemaining: 49,
      requestsResetAtMs: NOW + 60_000,
      tokensLimit: 16_000,
      tokensRemaining: 4_000,
      tokensResetAtMs: NOW + 30_000,
    });
  });

  it('copes with any header missing', () => {
    const headers: HeaderBag = {
      'anthropic-ratelimit-input-tokens-remaining': '0',
      'anthropic-ratelimit-input-tokens-reset': reset(5_000),
      'anthropic-ratelimit-output-tokens-remaining': '100',
    };
    expect(parseAnthropicLimits(headers, NOW)).toEqual({
      ...EMPTY_LIMITS,
      tokensRemaining: 0,
      tokensResetAtMs: NOW + 5_000,
    });
    expect(parseAnthropicLimits({}, NOW)).toBe(EMPTY_LIMITS);
    expect(parseAnthropicLimits({ 'anthropic-ratelimit-tokens-limit': '1000' }, NOW)).toEqual({ ...EMPTY_LIMITS, tokensLimit: 1000 });
  });

  it.each<[string, number | null]>([
    ['2023-11-14T22:14:20Z', NOW + 60_000],
    ['2023-11-14T22:14:20.250Z', NOW + 60_250],
    ['2023-11-14T22:14:20.123456789Z', NOW + 60_123],
    ['2023-11-14T23:14:20+01:00', NOW + 60_000],
    ['2023-11-14t22:14:20z', NOW + 60_000],
    ['2023-11-14T22:00:00Z', NOW], // already past: reset now
    ['2023-11-16T22:14:20Z', null], // two days ahead: ignored
    ['2023-11-14T22:14:20', null], // no zone: ambiguous
    ['2023-11-14', null],
    ['1700000060', null],
    ['2023-13-14T22:14:20Z', null],
    ['garbage', null],
  ])('reset %j -> %j', (value, expected) => {
    expect(parseAnthropicLimits({ 'anthropic-ratelimit-requests-reset': value }, NOW).requestsResetAtMs).toBe(expected);
  });

  it('parseRfc3339Ms ignores undefined', () => {
    expect(parseRfc3339Ms(undefined)).toBeNull();
  });
});

describe('learnedLimitsFor', () => {
  const openAiHeaders: HeaderBag = { 'x-ratelimit-remaining-requests': '3', 'anthropic-ratelimit-requests-remaining': '9' };
  it.each<[Parameters<typeof learnedLimitsFor>[0], number | null]>([
    ['openai', 3],
    ['azure', 3],
    ['anthropic', 9],
    ['gemini', null],
    ['none', null],
  ])('%s reads its own dialect', (dialect, remaining) => {
    expect(learnedLimitsFor(dialect, openAiHeaders, NOW).requestsRemaining).toBe(remaining);
  });
});

describe('authHeaderFor', () => {
  it.each<[AuthStyle, readonly [string, string]]>([
    ['bearer', ['authorization', 'Bearer sk-1']],
    ['x-api-key', ['x-api-key', 'sk-1']],
    ['api-key', ['api-key', 'sk-1']],
    ['x-goog-api-key', ['x-goog-api-key', 'sk-1']],
  ])('%s -> %j', (style, expected) => {
    expect(authHeaderFor(style, 'sk-1')).toEqual(expected);
  });
});

describe('observeResponse', () => {
  it.each<[number, ObservationOutcome]>([
    [200, 'success'],
    [201, 'success'],
    [204, 'success'],
    [101, 'client_error'],
    [304, 'client_error'],
    [400, 'client_error'],
    [404, 'client_error'],
    [408, 'client_error'],
    [413, 'client_error'],
    [401, 'invalid_credential'],
    [403, 'invalid_credential'],
    [402, 'quota_exhausted'],
    [429, 'rate_limited'],
    [500, 'server_error'],
    [502, 'server_error'],
    [503, 'server_error'],
    [529, 'server_error'],
    [599, 'server_error'],
    [0, 'server_error'],
    [600, 'server_error'],
    [99, 'server_error'],
    [-1, 'server_error'],
    [Number.NaN, 'server_error'],
    [200.5, 'server_error'],
  ])('status %d -> %s', (status, outcome) => {
    expect(classifyStatus(status)).toBe(outcome);
    const observation = observeResponse('openai', status, {}, NOW);
    expect(observation.outcome).toBe(outcome);
    if (outcome !== 'rate_limited') expect(observation.cooldownUntilMs).toBeNull();
  });

  const cooldowns: Array<[string, HeaderBag, number]> = [
    ['no hint: default 30 s', {}, NOW + 30_000],
    ['retry-after seconds', { 'retry-after': '7' }, NOW + 7_000],
    ['retry-after HTTP-date', { 'retry-after': 'Tue, 14 Nov 2023 22:14:50 GMT' }, NOW + 90_000],
    ['retry-after-ms', { 'retry-after-ms': '1500', 'retry-after': '2' }, NOW + 1_500],
    [
      'requests exhausted: its reset',
      { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6m0s', 'x-ratelimit-remaining-tokens': '5', 'x-ratelimit-reset-tokens': '1s' },
      NOW + 360_000,
    ],
    [
      'tokens exhausted: its reset',
      { 'x-ratelimit-remaining-requests': '3', 'x-ratelimit-reset-requests': '6m0s', 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '12ms' },
      NOW + 12,
    ],
    [
      'both exhausted: the later reset',
      { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s', 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '2m59.56s' },
      NOW + 179_560,
    ],
    ['retry hint beats resets', { 'retry-after': '3', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6m0s' }, NOW + 3_000],
    ['exhausted without a reset: default', { 'x-ratelimit-remaining-requests': '0' }, NOW + 30_000],
    ['garbage hints: default', { 'retry-after': 'later', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': 'soon' }, NOW + 30_000],
  ];
  it.each(cooldowns)('429 cooldown, %s', (_name, headers, untilMs) => {
    const observation = observeResponse('openai', 429, headers, NOW);
    expect(observation).toMatchObject({ outcome: 'rate_limited', status: 429, cooldownUntilMs: untilMs });
  });

  it('uses the given default cooldown', () => {
    expect(observeResponse('gemini', 429, {}, NOW, 5_000).cooldownUntilMs).toBe(NOW + 5_000);
  });

  it('429 from Anthropic cools down until the exhausted window resets', () => {
    const headers: HeaderBag = {
      'anthropic-ratelimit-tokens-remaining': '0',
      'anthropic-ratelimit-tokens-reset': '2023-11-14T22:14:20Z',
    };
    expect(observeResponse('anthropic', 429, headers, NOW).cooldownUntilMs).toBe(NOW + 60_000);
  });

  it('fills learned limits on every status', () => {
    const headers: HeaderBag = { 'x-ratelimit-limit-requests': '10', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' };
    const expected: LearnedLimits = { ...EMPTY_LIMITS, requestsLimit: 10, requestsRemaining: 0, requestsResetAtMs: NOW + 1_000 };
    for (const status of [200, 401, 429, 500, 0]) expect(observeResponse('azure', status, headers, NOW).learned).toEqual(expected);
  });

  it('never throws on garbage header shapes', () => {
    const weird = { 'retry-after': 42, 'x-ratelimit-remaining-requests': ['1', 2], 'x-ratelimit-reset-tokens': null } as unknown as HeaderBag;
    expect(() => observeResponse('openai', 429, weird, NOW)).not.toThrow();
    expect(observeResponse('openai', 429, weird, NOW).learned.requestsRemaining).toBe(1);
  });
});

describe('learned resets are capped (24 h for request windows, 1 h for token windows)', () => {
  it.each<[string, Record<string, string>, number | null, number | null, number | undefined]>([
    ['a day-long request window (Groq) is kept', { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '23h59m0s' }, NOW + 86_340_000, null, undefined],
    ['a request reset 48 h ahead is beyond any window: not learned at all', { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '48h0m0s' }, null, null, undefined],
    ['a request reset exactly 24 h ahead is kept', { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '24h0m0s' }, NOW + MAX_REQUESTS_RESET_MS, null, undefined],
    ['a token reset 2 h ahead is cut to 1 h', { 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '2h0m0s' }, null, NOW + MAX_TOKENS_RESET_MS, NOW + 2 * HOUR],
    ['a minute-long token window is kept', { 'x-ratelimit-remaining-tokens': '5', 'x-ratelimit-reset-tokens': '1m0s' }, null, NOW + 60_000, undefined],
  ])('%s', (_label, headers, requestsResetAtMs, tokensResetAtMs, cappedResetAtMs) => {
    const observation = observeResponse('openai', 200, headers, NOW);
    expect(observation.learned.requestsResetAtMs).toBe(requestsResetAtMs);
    expect(observation.learned.tokensResetAtMs).toBe(tokensResetAtMs);
    expect(observation.cappedResetAtMs).toBe(cappedResetAtMs);
  });

  it('a 429 without a retry hint cools down to the capped reset, not the reported one', () => {
    const observation = observeResponse('openai', 429, { 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '5h0m0s' }, NOW);
    expect(observation.cooldownUntilMs).toBe(NOW + MAX_TOKENS_RESET_MS);
  });
});

describe('changesAdmission: what must reach the shared state before the answer', () => {
  it.each<[number, Record<string, string>, boolean]>([
    [200, {}, false],
    [200, { 'x-ratelimit-remaining-requests': '12', 'x-ratelimit-reset-requests': '1s' }, false],
    [200, { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' }, true],
    [200, { 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '1s' }, true],
    [400, {}, false],
    [429, {}, true],
    [401, {}, true],
    [403, {}, true],
    [402, {}, true],
    [500, {}, true],
    [503, {}, true],
  ])('%i %j -> %s', (status, headers, expected) => {
    expect(changesAdmission(observeResponse('openai', status, headers, NOW))).toBe(expected);
  });
});
