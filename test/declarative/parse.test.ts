// keypool.yaml parsing: the catalog's validation with the file's paths and lines; references, never inline secrets.
import { describe, expect, it } from 'vitest';
import { formatProblems, parseConfigText } from '../../src/declarative/parse.js';

function problems(text: string): string[] {
  const parsed = parseConfigText(text);
  if (parsed.ok) throw new Error('expected problems');
  return formatProblems('k.yaml', parsed.problems).split('\n');
}

describe('parseConfigText', () => {
  it('reads every section into catalog-normalised values; left-out fields take their defaults', () => {
    const parsed = parseConfigText(`
version: 1
providers: [{slug: openai, strategy: least-loaded}, {slug: anthropic, strategy: priority, per_model_state: true}]
accounts:
  - {provider: OpenAI, name: " a ", key: {env: K}, rpm: "500"}
keys:
  - {name: k, tenant: t, allowed_ips: "10.1.2.3/8", expires_at: 2030-01-01, import: {file: ./k.txt}}
mappings:
  - {match: prefix, pattern: kp_ci_, priority: 1}
settings: {enabled: true}
`);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.state.providers).toEqual([
      { at: 'providers[0]', slug: 'openai', strategy: 'least-loaded', perModelState: false },
      { at: 'providers[1]', slug: 'anthropic', strategy: 'priority', perModelState: true },
    ]);
    expect(parsed.state.accounts).toEqual([
      { at: 'accounts[0]', provider: 'openai', name: 'a', key: { env: 'K' }, weight: 1, tier: 0, rpmLimit: 500, tpmLimit: null, maxConcurrency: null, tags: {}, models: [], scope: null, status: 'active' },
    ]);
    expect(parsed.state.keys?.[0]).toMatchObject({ allowedIps: ['10.0.0.0/8'], expiresAt: new Date('2030-01-01T00:00:00Z'), importKey: { file: './k.txt' }, prefix: null });
    expect(parsed.state.mappings?.[0]).toMatchObject({ matchType: 'prefix', pattern: 'kp_ci_', priority: 1, enabled: true, tenantId: null });
    expect(parsed.state.settings).toEqual([{ at: 'settings.enabled', name: 'priority.enabled', value: true }]);
    expect(parsed.lineOf('keys[0]')).toBe(7);
  });

  it('reads prices through the prices entity: numbers or decimal text, 6 decimals kept, optional prices null', () => {
    const parsed = parseConfigText('prices:\n  - {provider: openai, model: "gpt-4o*", input: "2.50", output: 10, cached_input: 1.25}\n  - {provider: openrouter, model: openai/o1, input: 0.0000004, output: "0.000001", cache_creation: null}\n');
    expect(parsed.ok && parsed.state).toEqual({
      prices: [
        { at: 'prices[0]', providerSlug: 'openai', model: 'gpt-4o*', inputUsdPerMTok: 2.5, outputUsdPerMTok: 10, cachedInputUsdPerMTok: 1.25, cacheCreationUsdPerMTok: null },
        { at: 'prices[1]', providerSlug: 'openrouter', model: 'openai/o1', inputUsdPerMTok: 0, outputUsdPerMTok: 0.000001, cachedInputUsdPerMTok: null, cacheCreationUsdPerMTok: null },
      ],
    });
  });

  it('a section left out is not managed', () => {
    const parsed = parseConfigText('mappings: []\n');
    expect(parsed.ok && parsed.state).toEqual({ mappings: [] });
  });

  it.each<[string, string, string[]]>([
    ['catalog ranges, in file terms', 'accounts:\n  - {provider: openai, name: a, rpm: 0}\n', ['k.yaml:2: accounts[0].rpm: must be between 1 and 2147483647 (got 0)']],
    ['several problems at once', 'accounts:\n  - provider: openai\n    name: a\n  - provider: "bad slug"\n    name: ""\n', [
      'k.yaml:4: accounts[1].provider: "bad slug" is not a provider slug (lower-case letters, digits and -)',
      'k.yaml:5: accounts[1].name: must not be empty',
    ]],
    ['unknown fields', 'keys:\n  - name: k\n    tenant_id: t\n', ['k.yaml:3: keys[0].tenant_id: unknown field; known: name, tenant, allowed_ips, expires_at, rotate_after_days, prefix, rpm, rpd, tpm, tpd, status, import']],
    ['unknown sections', 'acounts: []\n', ['k.yaml:1: acounts: unknown section; known: version, providers, accounts, keys, mappings, tenants, prices, settings']],
    ['inline secrets', 'accounts:\n  - {provider: openai, name: a, key: sk-123}\n', ['k.yaml:2: accounts[0].key: secrets are never written in the file: use {env: VARIABLE} or {file: /path/to/secret}']],
    ['bad references', 'keys:\n  - {name: k, import: {env: "1X"}}\n', ['k.yaml:2: keys[0].import: must be {env: VARIABLE} or {file: /path/to/secret}']],
    ['the same name twice', 'keys:\n  - name: k\n  - name: k\n', ['k.yaml:3: keys[1]: key k is already declared at keys[0]']],
    ['unsafe regex', 'mappings:\n  - {match: regex, pattern: "(a+)+$", priority: 1}\n', [expect.stringMatching(/^k\.yaml:2: mappings\[0\]\.pattern: /) as unknown as string]],
    ['bad settings', 'settings:\n  priority.default_priority: 12\n', ['k.yaml:2: settings.priority.default_priority: must be between 0 and 9 (got 12)']],
    ['a strategy that does not exist', 'providers:\n  - {slug: openai, strategy: fastest}\n', ['k.yaml:2: providers[0].strategy: "fastest" is not one of round-robin, weighted-random, priority, least-loaded']],
    ['a per_model_state that is not a boolean', 'providers:\n  - {slug: openai, strategy: priority, per_model_state: maybe}\n', ['k.yaml:2: providers[0].per_model_state: "maybe" is not a boolean (true or false)']],
    ['prices the prices entity refuses', 'prices:\n  - provider: openai\n    model: "gpt-*-mini"\n    input: -1\n    cached_input: "1.2345678"\n', [
      'k.yaml:3: prices[0].model: "gpt-*-mini": * may only end a pattern',
      'k.yaml:4: prices[0].input: must be from 0 to 100000 USD per million tokens (got -1)',
      'k.yaml:2: prices[0].output: is required',
      'k.yaml:5: prices[0].cached_input: must be a number (USD per million tokens)',
    ]],
    ['the same price twice', 'prices:\n  - {provider: openai, model: "*", input: 1, output: 2}\n  - {provider: openai, model: "*", input: 3, output: 4}\n', [
      'k.yaml:3: prices[1]: price openai * is already declared at prices[0]',
    ]],
    ['an unknown price field', 'prices:\n  - {provider: openai, model: "*", input: 1, output: 2, currency: EUR}\n', [
      'k.yaml:2: prices[0].currency: unknown field; known: provider, model, input, output, cached_input, cache_creation',
    ]],
    ['YAML syntax', 'accounts: [\n', [expect.stringMatching(/^k\.yaml:\d+: /) as unknown as string]],
    ['a duplicate YAML key', 'keys: []\nkeys: []\n', [expect.stringMatching(/^k\.yaml:2: .*unique/i) as unknown as string]],
    ['the wrong version', 'version: 2\n', ['k.yaml:1: version: must be 1']],
    ['a window with an unknown zone and equal times', 'mappings:\n  - match: exact\n    pattern: k\n    priority: 1\n    window:\n      days: [mon]\n      start: "08:00"\n      end: "08:00"\n      timezone: Moon/Base\n', [
      'k.yaml:8: mappings[0].window.end: must differ from window.start (for every hour of the listed days, leave the window out)',
      'k.yaml:9: mappings[0].window.timezone: "Moon/Base" is not a known IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)',
    ]],
    ['a one-line window without a zone', 'mappings:\n  - {match: exact, pattern: k, priority: 1, window: "mon 08:00-09:00"}\n', [
      'k.yaml:2: mappings[0].window: "mon 08:00-09:00" is not DAYS HH:MM-HH:MM ZONE, e.g. \'mon-fri 08:00-20:00 Europe/Berlin\' or \'sat,sun 22:00-06:00 UTC\'',
    ]],
    ['the same pattern and window twice', 'mappings:\n  - {match: exact, pattern: k, priority: 1, window: "mon 08:00-09:00 UTC"}\n  - {match: exact, pattern: k, priority: 2, window: {days: [mon], start: "08:00", end: "09:00", timezone: UTC}}\n', [
      'k.yaml:3: mappings[1]: mapping exact "k" [mon 08:00-09:00 UTC] is already declared at mappings[0]',
    ]],
  ])('%s', (_name, text, expected) => {
    expect(problems(text)).toEqual(expected);
  });
});
