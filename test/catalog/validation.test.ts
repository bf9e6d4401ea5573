// Table tests of the catalog's validation (src/catalog/validated.ts and the entity schemas): every validator, the normalised values it returns and the bad inputs it refuses.
import { describe, expect, it } from 'vitest';
import { errorResponse } from '../../src/admin/http-errors.js';
import { validateAccountPatch, validateNewAccount, validateReason, validateUpstreamSecret } from '../../src/catalog/accounts/schema.js';
import { DEFAULT_ROTATE_GRACE_MS, validateKeyPatch, validateNewKey, validateRotate } from '../../src/catalog/keys/schema.js';
import { validateMappingPatch, validateNewMapping } from '../../src/catalog/mappings/schema.js';
import { validateProviderSlug } from '../../src/catalog/providers/schema.js';
import { validateSetting, validateSettingName } from '../../src/catalog/settings/schema.js';
import { type FieldError, type Validated, ValidationFailure, camelCaseKeys, formatErrors, parseIsoInstantMs, snakeCase, unwrap, validateId } from '../../src/catalog/validated.js';

const NOW_MS = Date.parse('2025-06-01T00:00:00Z');
const DAY_MS = 86_400_000;

function errorsOf<T>(result: Validated<T>): readonly FieldError[] {
  if (result.ok) throw new Error(`expected a validation failure, got ${JSON.stringify(result.value)}`);
  return result.errors;
}

function valueOf<T>(result: Validated<T>): T {
  if (!result.ok) throw new Error(`expected success, got ${formatErrors(result.errors)}`);
  return result.value;
}

describe('validateNewKey', () => {
  it('normalises a full input', () => {
    const key = valueOf(
      validateNewKey(
        {
          name: '  ci bot  ',
          tenantId: 'acme.prod-1',
          allowedIps: '10.0.0.0/8, 2001:db8::/32,10.0.0.0/8',
          expiresIn: '90d',
          rotateAfterDays: '30',
        },
        NOW_MS,
      ),
    );
    expect(key).toEqual({
      name: 'ci bot',
      tenantId: 'acme.prod-1',
      allowedIps: ['10.0.0.0/8', '2001:db8::/32'],
      expiresAt: new Date(NOW_MS + 90 * DAY_MS),
      rotateAfterDays: 30,
      prefix: null,
    });
  });

  it('applies defaults for a minimal input', () => {
    expect(valueOf(validateNewKey({ name: 'k' }, NOW_MS))).toEqual({
      name: 'k',
      tenantId: null,
      allowedIps: [],
      expiresAt: null,
      rotateAfterDays: null,
      prefix: null,
    });
  });

  it('takes a key prefix for issued keys: letters, digits and inner dashes, no underscore', () => {
    expect(valueOf(validateNewKey({ name: 'k', prefix: 'prod-eu1' }, NOW_MS)).prefix).toBe('prod-eu1');
    for (const prefix of ['', 'has_underscore', '-lead', 'x'.repeat(33), 'sp ace']) {
      expect(validateNewKey({ name: 'k', prefix }, NOW_MS).ok, prefix).toBe(false);
    }
  });

  it('accepts allowedIps as a JSON array and normalises host bits and mapped IPv6', () => {
    const key = valueOf(validateNewKey({ name: 'k', allowedIps: ['10.1.2.3/8', '::ffff:192.168.0.1', '192.168.0.1'] }, NOW_MS));
    expect(key.allowedIps).toEqual(['10.0.0.0/8', '192.168.0.1/32']);
  });

  it('accepts an ISO expiry in the future', () => {
    expect(valueOf(validateNewKey({ name: 'k', expiresAt: '2026-01-31' }, NOW_MS)).expiresAt).toEqual(new Date('2026-01-31T00:00:00Z'));
    expect(valueOf(validateNewKey({ name: 'k', expiresAt: '2026-01-31T12:30:00+02:00' }, NOW_MS)).expiresAt).toEqual(
      new Date('2026-01-31T10:30:00Z'),
    );
  });

  it.each([
    ['missing name', {}, 'name', 'required'],
    ['empty name', { name: '   ' }, 'name', 'too_short'],
    ['long name', { name: 'x'.repeat(101) }, 'name', 'too_long'],
    ['control char in name', { name: 'a\u0007b' }, 'name', 'invalid_format'],
    ['bidi override in name', { name: 'a\u202eb' }, 'name', 'invalid_format'],
    ['number as name', { name: 5 }, 'name', 'invalid_type'],
    ['tenant with space', { name: 'k', tenantId: 'a b' }, 'tenantId', 'invalid_format'],
    ['tenant too long', { name: 'k', tenantId: 'a'.repeat(65) }, 'tenantId', 'invalid_format'],
    ['octal IPv4', { name: 'k', allowedIps: '010.0.0.1' }, 'allowedIps', 'invalid_cidr'],
    ['integer IPv4', { name: 'k', allowedIps: '167772161' }, 'allowedIps', 'invalid_cidr'],
    ['short IPv4', { name: 'k', allowedIps: '10.1' }, 'allowedIps', 'invalid_cidr'],
    ['hex IPv4', { name: 'k', allowedIps: '0x0a.0.0.1' }, 'allowedIps', 'invalid_cidr'],
    ['prefix too long', { name: 'k', allowedIps: '10.0.0.0/33' }, 'allowedIps', 'invalid_cidr'],
    ['garbage CIDR', { name: 'k', allowedIps: ['10.0.0.0/8', 'nope'] }, 'allowedIps', 'invalid_cidr'],
    ['allowedIps object', { name: 'k', allowedIps: { a: 1 } }, 'allowedIps', 'invalid_type'],
    ['too many CIDRs', { name: 'k', allowedIps: Array.from({ length: 257 }, (_, i) => `10.0.${i >> 8}.${i & 255}`) }, 'allowedIps', 'too_many'],
    ['bad duration', { name: 'k', expiresIn: '90 days' }, 'expiresIn', 'invalid_duration'],
    ['negative duration', { name: 'k', expiresIn: '-1d' }, 'expiresIn', 'invalid_duration'],
    ['zero duration', { name: 'k', expiresIn: '0s' }, 'expiresIn', 'out_of_range'],
    ['duration over 10 years', { name: 'k', expiresIn: '3651d' }, 'expiresIn', 'out_of_range'],
    ['past expiry', { name: 'k', expiresAt: '2020-01-01T00:00:00Z' }, 'expiresAt', 'in_past'],
    ['impossible date', { name: 'k', expiresAt: '2026-02-30' }, 'expiresAt', 'invalid_date'],
    ['date-time without zone', { name: 'k', expiresAt: '2026-01-01T00:00:00' }, 'expiresAt', 'invalid_date'],
    ['not a date', { name: 'k', expiresAt: 'tomorrow' }, 'expiresAt', 'invalid_date'],
    ['both expiries', { name: 'k', expiresIn: '1d', expiresAt: '2026-01-01' }, 'expiresAt', 'conflicting_fields'],
    ['rotate 0 days', { name: 'k', rotateAfterDays: 0 }, 'rotateAfterDays', 'out_of_range'],
    ['rotate 3651 days', { name: 'k', rotateAfterDays: '3651' }, 'rotateAfterDays', 'out_of_range'],
    ['rotate fraction', { name: 'k', rotateAfterDays: 1.5 }, 'rotateAfterDays', 'invalid_type'],
    ['rotate exponent', { name: 'k', rotateAfterDays: '1e2' }, 'rotateAfterDays', 'invalid_type'],
    ['unknown field', { name: 'k', owner: 'x' }, 'owner', 'unknown_field'],
  ])('refuses %s', (_label, input, field, code) => {
    expect(errorsOf(validateNewKey(input, NOW_MS))).toContainEqual(expect.objectContaining({ field, code }));
  });

  it('reports every problem at once', () => {
    const errors = errorsOf(validateNewKey({ tenantId: '!', allowedIps: '010.0.0.1', expiresIn: 'soon' }, NOW_MS));
    expect(errors.map((e) => e.field).sort()).toEqual(['allowedIps', 'expiresIn', 'name', 'tenantId']);
  });

  it.each([null, [], 'name=k', 42])('refuses a non-object input %j', (input) => {
    expect(errorsOf(validateNewKey(input, NOW_MS))).toEqual([expect.objectContaining({ field: 'body', code: 'invalid_type' })]);
  });
});

describe('validateKeyPatch', () => {
  it.each([
    [{ name: 'new' }, { name: 'new' }],
    [{ tenantId: null }, { tenantId: null }],
    [{ allowedIps: [] }, { allowedIps: [] }],
    [{ expiresAt: null }, { expiresAt: null }],
    [{ expiresIn: null }, { expiresAt: null }],
    [{ expiresIn: '1d' }, { expiresAt: new Date(NOW_MS + DAY_MS) }],
    [{ rotateAfterDays: null }, { rotateAfterDays: null }],
  ])('accepts %j', (input, expected) => {
    expect(valueOf(validateKeyPatch(input, NOW_MS))).toEqual(expected);
  });

  it.each([
    [{}, 'body', 'empty_patch'],
    [{ name: null }, 'name', 'invalid_type'],
    [{ status: 'revoked' }, 'status', 'unknown_field'],
    [{ allowedIps: '010.0.0.1/8' }, 'allowedIps', 'invalid_cidr'],
  ])('refuses %j', (input, field, code) => {
    expect(errorsOf(validateKeyPatch(input, NOW_MS))).toContainEqual(expect.objectContaining({ field, code }));
  });
});

describe('validateRotate', () => {
  it.each([
    [undefined, DEFAULT_ROTATE_GRACE_MS],
    [{}, DEFAULT_ROTATE_GRACE_MS],
    [{ grace: '24h' }, 86_400_000],
    [{ grace: '0s' }, 0],
    [{ grace: '1h30m' }, 5_400_000],
    [{ grace: '30d' }, 30 * DAY_MS],
    [{ graceSeconds: 60 }, 60_000],
    [{ graceSeconds: '0' }, 0],
    [{ graceMs: 1500 }, 1500],
  ])('%j -> %d ms', (input, graceMs) => {
    expect(valueOf(validateRotate(input))).toEqual({ graceMs });
  });

  it.each([
    [{ grace: '31d' }, 'grace', 'out_of_range'],
    [{ grace: 'forever' }, 'grace', 'invalid_duration'],
    [{ grace: '1.5h' }, 'grace', 'invalid_duration'],
    [{ graceSeconds: -1 }, 'graceSeconds', 'out_of_range'],
    [{ graceSeconds: 30 * 86_400 + 1 }, 'graceSeconds', 'out_of_range'],
    [{ grace: '1h', graceSeconds: 5 }, 'graceSeconds', 'conflicting_fields'],
  ])('refuses %j', (input, field, code) => {
    expect(errorsOf(validateRotate(input))).toContainEqual(expect.objectContaining({ field, code }));
  });
});

const SECRET = 'sk-live-THIS-IS-THE-SECRET-1234';

describe('validateNewAccount', () => {
  it('applies defaults and normalises the slug', () => {
    expect(valueOf(validateNewAccount({ providerSlug: ' OpenAI ', name: 'main', apiKey: SECRET }))).toEqual({
      providerSlug: 'openai',
      name: 'main',
      apiKey: SECRET,
      weight: 1,
      tier: 0,
      rpmLimit: null,
      tpmLimit: null,
      maxConcurrency: null,
      tags: {},
      models: [],
      scope: null,
    });
  });

  it.each<[unknown, unknown]>([
    [['gpt-4o*', 'o1', 'gpt-4o*'], ['gpt-4o*', 'o1']],
    ['gpt-4o*, o1 ,', ['gpt-4o*', 'o1']],
    [[], []],
    [['ft:gpt-4o-mini:acme::x1', 'meta-llama/Llama-3-70b', 'anthropic.claude-3@v1+x'], ['ft:gpt-4o-mini:acme::x1', 'meta-llama/Llama-3-70b', 'anthropic.claude-3@v1+x']],
  ])('models %j -> %j (duplicates dropped, order kept; a string is a comma list)', (models, expected) => {
    expect(valueOf(validateNewAccount({ providerSlug: 'openai', name: 'm', apiKey: SECRET, models })).models).toEqual(expected);
  });

  it.each<[string, unknown, string]>([
    ['a glob with * inside', { models: ['gpt-*-mini'] }, 'models'],
    ['only *', { models: ['*'] }, 'models'],
    ['a space', { models: ['gpt 4o'] }, 'models'],
    ['not a list', { models: 42 }, 'models'],
    ['65 models', { models: Array.from({ length: 65 }, (_, i) => `m${i}`) }, 'models'],
    ['a scope starting with /', { scope: '/x' }, 'scope'],
    ['a scope with a space', { scope: 'a b' }, 'scope'],
    ['a scope too long', { scope: 's'.repeat(129) }, 'scope'],
  ])('refuses %s', (_label, fields, field) => {
    const result = validateNewAccount({ providerSlug: 'openai', name: 'm', apiKey: SECRET, ...(fields as object) });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.errors.map((e) => e.field)).toEqual([field]);
  });

  it('parses numbers given as strings and keeps tags', () => {
    const account = valueOf(
      validateNewAccount({
        providerSlug: 'azure-openai',
        name: 'eu',
        apiKey: SECRET,
        weight: '1000',
        tier: 100,
        rpmLimit: '500',
        tpmLimit: 100000,
        maxConcurrency: null,
        tags: { team: 'ml', cost: 3, shared: true, note: null },
      }),
    );
    expect(account).toMatchObject({ weight: 1000, tier: 100, rpmLimit: 500, tpmLimit: 100000, maxConcurrency: null });
    expect(account.tags).toEqual({ team: 'ml', cost: 3, shared: true, note: null });
  });

  it.each([
    ['weight 1001', { weight: 1001 }, 'weight', 'out_of_range'],
    ['weight -1', { weight: '-1' }, 'weight', 'out_of_range'],
    ['weight 0 (the store requires at least 1)', { weight: 0 }, 'weight', 'out_of_range'],
    ['weight 1.5', { weight: 1.5 }, 'weight', 'invalid_type'],
    ['tier 101', { tier: 101 }, 'tier', 'out_of_range'],
    ['rpm 0', { rpmLimit: 0 }, 'rpmLimit', 'out_of_range'],
    ['tpm text', { tpmLimit: 'lots' }, 'tpmLimit', 'invalid_type'],
    ['concurrency hex', { maxConcurrency: '0x10' }, 'maxConcurrency', 'invalid_type'],
    ['tags array', { tags: ['a'] }, 'tags', 'invalid_type'],
    ['tag nested', { tags: { a: { b: 1 } } }, 'tags', 'invalid_type'],
    ['bad slug', { providerSlug: 'open ai' }, 'providerSlug', 'invalid_format'],
    ['slug with underscore', { providerSlug: 'open_ai' }, 'providerSlug', 'invalid_format'],
    ['unknown field', { provider: 'openai' }, 'provider', 'unknown_field'],
  ])('refuses %s', (_label, patch, field, code) => {
    const input = { providerSlug: 'openai', name: 'main', apiKey: SECRET, ...patch };
    expect(errorsOf(validateNewAccount(input))).toContainEqual(expect.objectContaining({ field, code }));
  });

  it('requires provider, name and key', () => {
    expect(errorsOf(validateNewAccount({})).map((e) => [e.field, e.code])).toEqual([
      ['providerSlug', 'required'],
      ['name', 'required'],
      ['apiKey', 'required'],
    ]);
  });
});

describe('upstream secrets never appear in messages', () => {
  const bad = [
    `${SECRET} trailing`,
    `${SECRET}\n`,
    `\t${SECRET}`,
    `${SECRET}\u0000`,
    `${SECRET}\u00a0`,
    `${SECRET}${'x'.repeat(4096)}`,
    '',
  ];
  it.each(bad.map((s) => [JSON.stringify(s).slice(0, 40), s]))('%s', (_label, secret) => {
    const results: Validated<unknown>[] = [
      validateUpstreamSecret(secret),
      validateNewAccount({ providerSlug: 'openai', name: 'main', apiKey: secret }),
      validateAccountPatch({ apiKey: secret }),
    ];
    for (const result of results) {
      const errors = errorsOf(result);
      expect(errors.some((e) => e.field === 'apiKey')).toBe(true);
      const text = JSON.stringify(errors) + new ValidationFailure(errors).message + JSON.stringify(errorResponse(new ValidationFailure(errors)).body);
      expect(text).not.toContain('THIS-IS-THE-SECRET');
    }
  });

  it('accepts a clean secret up to 4096 characters', () => {
    expect(valueOf(validateUpstreamSecret('a'.repeat(4096)))).toHaveLength(4096);
    expect(valueOf(validateUpstreamSecret(SECRET))).toBe(SECRET);
  });

  it('refuses a non-string secret without echoing it', () => {
    const errors = errorsOf(validateUpstreamSecret({ key: SECRET }));
    expect(JSON.stringify(errors)).not.toContain('THIS-IS-THE-SECRET');
  });
});

describe('validateAccountPatch', () => {
  it.each([
    [{ weight: 1 }, { weight: 1 }],
    [{ rpmLimit: null }, { rpmLimit: null }],
    [{ name: 'x', tier: '2' }, { name: 'x', tier: 2 }],
    [{ apiKey: SECRET }, { apiKey: SECRET }],
  ])('accepts %j', (input, expected) => {
    expect(valueOf(validateAccountPatch(input))).toEqual(expected);
  });

  it.each([
    [{}, 'body', 'empty_patch'],
    [{ providerSlug: 'openai' }, 'providerSlug', 'unknown_field'],
    [{ weight: null }, 'weight', 'invalid_type'],
  ])('refuses %j', (input, field, code) => {
    expect(errorsOf(validateAccountPatch(input))).toContainEqual(expect.objectContaining({ field, code }));
  });
});

describe('validateNewMapping', () => {
  it('applies defaults', () => {
    expect(valueOf(validateNewMapping({ pattern: 'kp_team', matchType: 'prefix', priority: '1' }))).toEqual({
      pattern: 'kp_team',
      matchType: 'prefix',
      priority: 1,
      tenantId: null,
      tenantName: null,
      tenantType: null,
      description: null,
      enabled: true,
      window: null,
    });
  });

  it('keeps every field', () => {
    const mapping = valueOf(
      validateNewMapping({
        pattern: '^kp_[a-z]+$',
        matchType: 'regex',
        priority: 0,
        tenantId: 'team-a',
        tenantName: 'Team A',
        tenantType: 'internal',
        description: 'batch jobs',
        enabled: 'false',
      }),
    );
    expect(mapping).toMatchObject({ matchType: 'regex', priority: 0, tenantType: 'internal', enabled: false });
  });

  it.each([
    ['missing pattern', { matchType: 'exact', priority: 1 }, 'pattern', 'required'],
    ['empty pattern', { pattern: '', matchType: 'exact', priority: 1 }, 'pattern', 'too_short'],
    ['unknown match type', { pattern: 'a', matchType: 'glob', priority: 1 }, 'matchType', 'invalid_choice'],
    ['broken regex', { pattern: '([a-z', matchType: 'regex', priority: 1 }, 'pattern', 'invalid_pattern'],
    ['catastrophic regex', { pattern: '^(a+)+$', matchType: 'regex', priority: 1 }, 'pattern', 'invalid_pattern'],
    ['priority 10', { pattern: 'a', matchType: 'exact', priority: 10 }, 'priority', 'out_of_range'],
    ['priority -1', { pattern: 'a', matchType: 'exact', priority: -1 }, 'priority', 'out_of_range'],
    ['priority text', { pattern: 'a', matchType: 'exact', priority: 'high' }, 'priority', 'invalid_type'],
    ['tenant type', { pattern: 'a', matchType: 'exact', priority: 1, tenantType: 'partner' }, 'tenantType', 'invalid_choice'],
    ['tenant id', { pattern: 'a', matchType: 'exact', priority: 1, tenantId: 'a/b' }, 'tenantId', 'invalid_format'],
    ['enabled maybe', { pattern: 'a', matchType: 'exact', priority: 1, enabled: 'maybe' }, 'enabled', 'invalid_type'],
    ['description long', { pattern: 'a', matchType: 'exact', priority: 1, description: 'd'.repeat(501) }, 'description', 'too_long'],
  ])('refuses %s', (_label, input, field, code) => {
    expect(errorsOf(validateNewMapping(input))).toContainEqual(expect.objectContaining({ field, code }));
  });
});

describe('mapping windows', () => {
  const base = { pattern: 'kp_batch_', matchType: 'prefix', priority: 7 };
  const BERLIN = { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '20:00', timezone: 'Europe/Berlin' };

  it('accepts an object and normalises the days (lower case, once each, week order)', () => {
    expect(valueOf(validateNewMapping({ ...base, window: { ...BERLIN, days: ['Fri', 'mon', 'tue', 'wed', 'thu', 'fri'] } })).window).toEqual(BERLIN);
    expect(valueOf(validateNewMapping({ ...base, window: null })).window).toBeNull();
    expect(valueOf(validateNewMapping({ ...base, window: { days: ['sun'], start: '22:00', end: '06:00', timezone: 'UTC' } })).window).toEqual({
      days: ['sun'],
      start: '22:00',
      end: '06:00',
      timezone: 'UTC',
    });
  });

  const lines: Array<[string, object]> = [
    ['mon-fri 08:00-20:00 Europe/Berlin', BERLIN],
    ['  MON-FRI   08:00-20:00   Europe/Berlin ', BERLIN],
    ['sat,sun 22:00-06:00 UTC', { days: ['sat', 'sun'], start: '22:00', end: '06:00', timezone: 'UTC' }],
    ['fri-mon 00:00-23:59 America/New_York', { days: ['mon', 'fri', 'sat', 'sun'], start: '00:00', end: '23:59', timezone: 'America/New_York' }],
    ['mon,wed-thu 09:30-10:00 Asia/Tokyo', { days: ['mon', 'wed', 'thu'], start: '09:30', end: '10:00', timezone: 'Asia/Tokyo' }],
  ];
  it.each(lines)('reads the one-line form %j', (text, window) => {
    expect(valueOf(validateNewMapping({ ...base, window: text })).window).toEqual(window);
  });

  const refused: Array<[string, unknown, string, string]> = [
    ['days missing', { ...BERLIN, days: undefined }, 'window.days', 'required'],
    ['days not a list', { ...BERLIN, days: 'mon-fri' }, 'window.days', 'invalid_type'],
    ['days empty', { ...BERLIN, days: [] }, 'window.days', 'too_short'],
    ['an unknown day', { ...BERLIN, days: ['mon', 'monday'] }, 'window.days', 'invalid_choice'],
    ['start not HH:MM', { ...BERLIN, start: '8:00' }, 'window.start', 'invalid_format'],
    ['start 24:00', { ...BERLIN, start: '24:00' }, 'window.start', 'invalid_format'],
    ['end with seconds', { ...BERLIN, end: '20:00:00' }, 'window.end', 'invalid_format'],
    ['end a number', { ...BERLIN, end: 2000 }, 'window.end', 'invalid_format'],
    ['start equal to end', { ...BERLIN, end: '08:00' }, 'window.end', 'invalid_format'],
    ['an unknown zone', { ...BERLIN, timezone: 'Mars/Olympus_Mons' }, 'window.timezone', 'invalid_choice'],
    ['an alias (the message names the listed zone)', { ...BERLIN, timezone: 'US/Eastern' }, 'window.timezone', 'invalid_choice'],
    ['a zone in the wrong case', { ...BERLIN, timezone: 'europe/berlin' }, 'window.timezone', 'invalid_choice'],
    ['zone missing', { ...BERLIN, timezone: undefined }, 'window.timezone', 'required'],
    ['an unknown field', { ...BERLIN, tz: 'UTC' }, 'window.tz', 'unknown_field'],
    ['not an object', 42, 'window', 'invalid_type'],
    ['a list', ['mon'], 'window', 'invalid_type'],
    ['a line without a zone', 'mon-fri 08:00-20:00', 'window', 'invalid_format'],
    ['a line with a bad day range', 'mon-xyz 08:00-20:00 UTC', 'window', 'invalid_format'],
    ['a line with one time', 'mon 08:00 UTC', 'window', 'invalid_format'],
    ['a line with a bad zone', 'mon 08:00-09:00 Berlin', 'window.timezone', 'invalid_choice'],
    ['a line with equal times', 'mon 08:00-08:00 UTC', 'window.end', 'invalid_format'],
  ];
  it.each(refused)('refuses %s with a field error', (_label, window, field, code) => {
    const errors = errorsOf(validateNewMapping({ ...base, window }));
    expect(errors).toContainEqual(expect.objectContaining({ field, code }));
    for (const error of errors) expect(error.message.startsWith(error.field)).toBe(true);
  });

  it('names the listed zone for an alias', () => {
    expect(errorsOf(validateNewMapping({ ...base, window: { ...BERLIN, timezone: 'US/Eastern' } }))[0]!.message).toContain('"America/New_York"');
  });

  it('reports every problem of one window at once', () => {
    const errors = errorsOf(validateNewMapping({ ...base, window: { days: ['mo'], start: '25:00', end: 'x', timezone: 'Nowhere' } }));
    expect(errors.map((e) => e.field).sort()).toEqual(['window.days', 'window.end', 'window.start', 'window.timezone']);
  });

  it('patches: sets, clears, refuses', () => {
    expect(valueOf(validateMappingPatch({ window: 'sat,sun 00:00-12:00 UTC' }))).toEqual({
      window: { days: ['sat', 'sun'], start: '00:00', end: '12:00', timezone: 'UTC' },
    });
    expect(valueOf(validateMappingPatch({ window: null }))).toEqual({ window: null });
    expect(errorsOf(validateMappingPatch({ window: { ...BERLIN, start: '' } }))).toContainEqual(expect.objectContaining({ field: 'window.start' }));
  });
});

describe('validateMappingPatch', () => {
  const current = { pattern: 'kp_', matchType: 'prefix' as const };

  it('checks a new match type against the current pattern', () => {
    expect(valueOf(validateMappingPatch({ matchType: 'exact' }, current))).toEqual({ matchType: 'exact' });
    expect(errorsOf(validateMappingPatch({ matchType: 'regex', pattern: '(' }, current))).toContainEqual(
      expect.objectContaining({ field: 'pattern', code: 'invalid_pattern' }),
    );
  });

  it('needs the other half when no current mapping is given', () => {
    expect(errorsOf(validateMappingPatch({ pattern: 'x' }))).toContainEqual(expect.objectContaining({ field: 'matchType', code: 'required' }));
  });

  it('accepts plain field changes and clears', () => {
    expect(valueOf(validateMappingPatch({ priority: 3, tenantName: null, enabled: true }))).toEqual({
      priority: 3,
      tenantName: null,
      enabled: true,
    });
  });

  it('refuses an empty patch', () => {
    expect(errorsOf(validateMappingPatch({}))).toContainEqual(expect.objectContaining({ code: 'empty_patch' }));
  });
});

describe('validateSetting', () => {
  it.each([
    ['priority.enabled', 'true', true],
    ['priority.enabled', 'off', false],
    ['priority.enabled', false, false],
    ['priority.default_priority', '0', 0],
    ['priority.default_priority', 9, 9],
  ])('%s = %j', (name, value, expected) => {
    expect(valueOf(validateSetting(name, value))).toEqual({ name, value: expected });
  });

  it.each([
    ['priority.enable', 'true', 'name', 'unknown_setting'],
    ['cache_ttl_sec', '300', 'name', 'unknown_setting'],
    ['priority.enabled', 'maybe', 'value', 'invalid_type'],
    ['priority.default_priority', '10', 'value', 'out_of_range'],
    ['priority.default_priority', '-1', 'value', 'out_of_range'],
    ['priority.default_priority', '5m', 'value', 'invalid_type'],
    ['priority.cache_ttl_sec', '300', 'name', 'unknown_setting'],
  ])('refuses %s = %j', (name, value, field, code) => {
    expect(errorsOf(validateSetting(name, value))).toEqual([expect.objectContaining({ field, code })]);
  });

  it('validates a name alone', () => {
    expect(valueOf(validateSettingName('priority.default_priority'))).toBe('priority.default_priority');
    // The short form (without `priority.`) names the same setting, as the CLI and the catalog always accepted.
    expect(valueOf(validateSetting('enabled', 'true'))).toEqual({ name: 'priority.enabled', value: true });
    expect(errorsOf(validateSettingName('x'))[0]?.code).toBe('unknown_setting');
  });
});

describe('small validators', () => {
  it.each([
    ['3F2504E0-4F89-11D3-9A0C-0305E82C3301', '3f2504e0-4f89-11d3-9a0c-0305e82c3301'],
    ['00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000'],
  ])('id %s', (input, expected) => {
    expect(valueOf(validateId(input))).toBe(expected);
  });

  it.each(['', 'abc', '3f2504e0-4f89-11d3-9a0c-0305e82c330', '3f2504e0-4f89-11d3-9a0c-0305e82c3301x', '{3f2504e0-4f89-11d3-9a0c-0305e82c3301}', 7])(
    'refuses id %j',
    (input) => {
      expect(errorsOf(validateId(input))).toEqual([expect.objectContaining({ field: 'id', code: 'invalid_uuid' })]);
    },
  );

  it('provider slugs', () => {
    expect(valueOf(validateProviderSlug('Gemini'))).toBe('gemini');
    expect(errorsOf(validateProviderSlug('-x'))[0]?.code).toBe('invalid_format');
  });

  it('reasons', () => {
    expect(valueOf(validateReason(undefined))).toBeNull();
    expect(valueOf(validateReason(' quota '))).toBe('quota');
    expect(errorsOf(validateReason('r'.repeat(501)))[0]?.code).toBe('too_long');
  });

  it.each([
    ['2026-01-31', Date.parse('2026-01-31T00:00:00Z')],
    ['2024-02-29', Date.parse('2024-02-29T00:00:00Z')],
    ['2026-01-31T10:00Z', Date.parse('2026-01-31T10:00:00Z')],
    ['2026-01-31T10:00:00.5-01:00', Date.parse('2026-01-31T11:00:00.5Z')],
    ['2025-02-29', null],
    ['2026-13-01', null],
    ['2026-01-31T24:00:00Z', null],
    ['31/01/2026', null],
    ['1706659200', null],
  ])('ISO instant %s', (text, expected) => {
    expect(parseIsoInstantMs(text)).toBe(expected);
  });
});

describe('ValidationFailure and helpers', () => {
  it('renders the admin API body with snake_case fields', () => {
    const failure = new ValidationFailure(errorsOf(validateNewKey({ name: 'k', allowedIps: 'x', rotateAfterDays: 0 }, NOW_MS)));
    const { status, body } = errorResponse(failure);
    expect(status).toBe(422);
    expect(body.error).toMatchObject({ code: 'invalid_cidr', field: 'allowed_ips' });
    expect(body.error.details?.map((d) => d.field)).toEqual(['allowed_ips', 'rotate_after_days']);
  });

  it('unwrap returns the value or throws ValidationFailure', () => {
    expect(unwrap(validateId('00000000-0000-0000-0000-000000000000'))).toBe('00000000-0000-0000-0000-000000000000');
    expect(() => unwrap(validateId('nope'))).toThrow(ValidationFailure);
  });

  it('case helpers', () => {
    expect(camelCaseKeys({ allowed_ips: [], rotate_after_days: 1, name: 'x' })).toEqual({ allowedIps: [], rotateAfterDays: 1, name: 'x' });
    expect(snakeCase('maxConcurrency')).toBe('max_concurrency');
  });

  it('quotes rejected values escaped and truncated', () => {
    const [error] = errorsOf(validateNewKey({ name: 'k', tenantId: `\u001b[31m${'x'.repeat(100)}` }, NOW_MS));
    expect(error?.message).not.toContain('\u001b');
    expect(error?.message.length).toBeLessThan(200);
  });
});
