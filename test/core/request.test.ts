import { describe, expect, it } from 'vitest';
import { CLIENT_CREDENTIAL_HEADERS, createKeyDigester, DEFAULT_KEY_HEADERS } from '../../src/core/apikey.js';
import { compileAllowlist } from '../../src/core/cidr.js';
import { compilePriority } from '../../src/core/priority/index.js';
import { authorizeRequest, buildAllow, denyForAdmission, type Authorized } from '../../src/core/request.js';
import type {
  Account,
  AuthStyle,
  Deny,
  KeyEntry,
  PrioritySettings,
  ProviderPool,
  RequestView,
  Snapshot,
  SystemKey,
} from '../../src/core/types.js';

const NOW = 1_700_000_000_000;
const digest = createKeyDigester(new TextEncoder().encode('test-pepper'));

const KEYS = {
  plain: 'kp_plain00000000000000000000000000000000',
  tenant: 'kp_tenant0000000000000000000000000000000',
  revoked: 'kp_revoked000000000000000000000000000000',
  expired: 'kp_expired000000000000000000000000000000',
  rotatedNew: 'kp_rotatednew000000000000000000000000000',
  rotatedOld: 'kp_rotatedold000000000000000000000000000',
  rotatedGone: 'kp_rotatedgone00000000000000000000000000',
  future: 'kp_future0000000000000000000000000000000',
  office: 'kp_office0000000000000000000000000000000',
  vip: 'kp_vip000000000000000000000000000000000',
  vipNoTenant: 'kp_vip_notenant000000000000000000000000',
} as const;

function systemKey(id: string, extra: Partial<SystemKey> = {}): SystemKey {
  return { id, name: id, tenantId: null, keyPrefix: id.slice(0, 11), status: 'active', expiresAtMs: null, allowlist: null, ...extra };
}

function account(name: string): Account {
  return {
    id: `acct-${name}`,
    providerSlug: 'openai',
    name,
    secret: `sk-${name}-secret`,
    weight: 1,
    tier: 0,
    rpmLimit: null,
    tpmLimit: null,
    maxConcurrency: null,
    status: 'active',
    scope: null,
    servesModel: () => true,
    restrictsModels: false,
  };
}

function pool(slug: string, authStyle: AuthStyle): ProviderPool {
  return { slug, authStyle, dialect: 'openai', strategy: 'round-robin', accounts: [account(`${slug}-1`)], needsModel: false, countsTokens: false, readsPath: false };
}

function buildSnapshot(priorityEnabled: boolean): Snapshot {
  const rotated = systemKey('key-rotated');
  const entries: Array<[string, KeyEntry]> = [
    [KEYS.plain, { key: systemKey('key-plain'), graceEndsAtMs: null }],
    [KEYS.tenant, { key: systemKey('key-tenant', { tenantId: 'team-a' }), graceEndsAtMs: null }],
    [KEYS.revoked, { key: systemKey('key-revoked', { status: 'revoked' }), graceEndsAtMs: null }],
    [KEYS.expired, { key: systemKey('key-expired', { expiresAtMs: NOW }), graceEndsAtMs: null }],
    [KEYS.future, { key: systemKey('key-future', { expiresAtMs: NOW + 1 }), graceEndsAtMs: null }],
    [KEYS.rotatedNew, { key: rotated, graceEndsAtMs: null }],
    [KEYS.rotatedOld, { key: rotated, graceEndsAtMs: NOW + 60_000 }],
    [KEYS.rotatedGone, { key: rotated, graceEndsAtMs: NOW }],
    [KEYS.office, { key: systemKey('key-office', { allowlist: compileAllowlist(['10.0.0.0/8', '2001:db8::/32']) }), graceEndsAtMs: null }],
    [KEYS.vip, { key: systemKey('key-vip', { tenantId: 'key-tenant' }), graceEndsAtMs: null }],
    [KEYS.vipNoTenant, { key: systemKey('key-vip-no-tenant'), graceEndsAtMs: null }],
  ];
  const settings: PrioritySettings = { enabled: priorityEnabled, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 };
  const mapping = { tenantName: null, enabled: true, createdAtMs: 1 };
  return {
    version: 1,
    loadedAtMs: NOW,
    digestKey: digest,
    keysByDigest: new Map(entries.map(([plain, entry]) => [digest(plain), entry])),
    pools: new Map([
      ['openai', pool('openai', 'bearer')],
      ['anthropic', pool('anthropic', 'x-api-key')],
      ['azure-openai', pool('azure-openai', 'api-key')],
      ['gemini', pool('gemini', 'x-goog-api-key')],
    ]),
    priority: compilePriority(
      [
        { ...mapping, id: 'm-vip', pattern: 'kp_vip', matchType: 'prefix', priority: 0, tenantId: 'vip-tenant', tenantName: 'VIP' },
        { ...mapping, id: 'm-tenant', pattern: 'kp_tenant', matchType: 'prefix', priority: 2, tenantId: null },
      ],
      settings,
    ),
    prioritySettings: settings,
    anyTokenQuota: false,
  };
}

const ON = buildSnapshot(true);
const OFF = buildSnapshot(false);

function view(key: string | null, extra: Partial<RequestView> = {}): RequestView {
  return { headers: key === null ? {} : { authorization: `Bearer ${key}` }, clientAddress: '192.0.2.1:5555', provider: 'openai', ...extra };
}

function authorize(requestView: RequestView, snapshot: Snapshot = OFF, nowMs = NOW): Authorized | Deny {
  return authorizeRequest(requestView, snapshot, nowMs, DEFAULT_KEY_HEADERS);
}

describe('authorizeRequest: who is calling', () => {
  it.each<[string, RequestView, string, string | undefined]>([
    ['no key', view(null), 'missing_api_key', undefined],
    ['malformed header', view(null, { headers: { authorization: 'Bearer' } }), 'invalid_api_key', undefined],
    ['unknown key', view('kp_unknown000000000000000000000000000000'), 'invalid_api_key', undefined],
    ['revoked key', view(KEYS.revoked), 'key_revoked', 'denied_revoked'],
    ['expired key (expiresAt == now)', view(KEYS.expired), 'key_expired', 'denied_expired'],
    ['rotated-out key after its grace', view(KEYS.rotatedGone), 'invalid_api_key', undefined],
  ])('%s -> %s', (_name, requestView, code, auditAction) => {
    const result = authorize(requestView);
    expect(result).toMatchObject({ kind: 'deny', code, status: code === 'ip_not_allowed' ? 403 : 401 });
    expect((result as Deny).audit?.action).toBe(auditAction);
  });

  it.each<[string, string, string]>([
    ['valid key', KEYS.plain, 'key-plain'],
    ['key one ms before expiry', KEYS.future, 'key-future'],
    ['new key after rotation', KEYS.rotatedNew, 'key-rotated'],
    ['rotated-out key within its grace', KEYS.rotatedOld, 'key-rotated'],
  ])('%s -> authorized', (_name, key, keyId) => {
    expect(authorize(view(key))).toMatchObject({ kind: 'authorized', key: { id: keyId } });
  });

  it('audits with the key id', () => {
    expect((authorize(view(KEYS.revoked)) as Deny).audit).toEqual({ keyId: 'key-revoked', action: 'denied_revoked' });
  });

  it('honours a per-route key header list', () => {
    const custom = view(null, { headers: { 'x-team-key': KEYS.plain }, keyHeaders: ['x-team-key'] });
    expect(authorize(custom)).toMatchObject({ kind: 'authorized', credentialHeaders: ['x-team-key'] });
    expect(authorize(view(KEYS.plain, { keyHeaders: ['x-team-key'] }))).toMatchObject({ code: 'missing_api_key' });
  });
});

describe('authorizeRequest: from where', () => {
  it.each<[string | null, boolean]>([
    ['10.1.2.3', true],
    ['10.1.2.3:40000', true],
    ['::ffff:10.0.0.1', true],
    ['[::ffff:10.0.0.1]:443', true],
    ['[2001:db8::5]:443', true],
    ['11.0.0.1', false],
    ['[2001:db9::5]:443', false],
    ['010.0.0.1', false], // inet_aton would read 8.0.0.1; strict parsing refuses it
    ['garbage', false],
    [null, false], // allowlist but the gateway did not say who is calling: fail closed
  ])('office key from %j -> allowed %s', (address, allowed) => {
    const result = authorize(view(KEYS.office, { clientAddress: address }));
    if (allowed) {
      expect(result.kind).toBe('authorized');
    } else {
      expect(result).toMatchObject({ kind: 'deny', code: 'ip_not_allowed', status: 403, audit: { keyId: 'key-office', action: 'denied_ip' } });
    }
  });

  it('keys without an allowlist accept any or no address', () => {
    expect(authorize(view(KEYS.plain, { clientAddress: null })).kind).toBe('authorized');
    expect(authorize(view(KEYS.plain, { clientAddress: 'garbage' })).kind).toBe('authorized');
  });
});

describe('authorizeRequest: provider and priority', () => {
  it('unknown provider -> 503 naming it', () => {
    const result = authorize(view(KEYS.plain, { provider: 'mistral' }));
    expect(result).toMatchObject({ kind: 'deny', code: 'unknown_provider', status: 503 });
    expect((result as Deny).message).toContain('"mistral"');
    expect(JSON.parse((result as Deny).body).error.message).toContain('mistral');
  });

  it('checks the key before revealing anything about providers', () => {
    expect(authorize(view('kp_unknown000000000000000000000000000000', { provider: 'mistral' }))).toMatchObject({ code: 'invalid_api_key' });
  });

  it.each<[string, Snapshot, string, number, string | null, string | null]>([
    ['off: default, key tenant kept', OFF, KEYS.tenant, 7, 'team-a', null],
    ['off: mappings ignored', OFF, KEYS.vip, 7, 'key-tenant', null],
    ["on: mapping priority wins, the key's own tenant beats the mapping's", ON, KEYS.vip, 0, 'key-tenant', 'm-vip'],
    ["on: a key without a tenant takes the mapping's", ON, KEYS.vipNoTenant, 0, 'vip-tenant', 'm-vip'],
    ['on: mapping without tenant keeps the key tenant', ON, KEYS.tenant, 2, 'team-a', 'm-tenant'],
    ['on: no mapping -> default', ON, KEYS.plain, 7, null, null],
  ])('%s', (_name, snapshot, key, priority, tenantId, mappingId) => {
    expect(authorize(view(key), snapshot)).toMatchObject({ kind: 'authorized', priority: { priority, tenantId, mappingId } });
  });
});

describe('authorizeRequest: time-based priority rules', () => {
  it("resolves the key's mapping at the request's nowMs (a window open or closed)", () => {
    const settings: PrioritySettings = { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 };
    const mapping = { tenantName: null, enabled: true, createdAtMs: 1, tenantId: null, matchType: 'prefix' as const, pattern: 'kp_plain' };
    const snapshot: Snapshot = {
      ...ON,
      priority: compilePriority(
        [
          { ...mapping, id: 'm-office', priority: 1, window: { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '09:00', end: '17:00', timezone: 'America/New_York' } },
          { ...mapping, id: 'm-always', priority: 6 },
        ],
        settings,
      ),
    };
    const at = (iso: string) => (authorize(view(KEYS.plain), snapshot, Date.parse(iso)) as Authorized).priority;
    expect(at('2026-03-04T15:00:00Z')).toMatchObject({ priority: 1, mappingId: 'm-office' }); // Wednesday 10:00 EST
    expect(at('2026-03-04T23:00:00Z')).toMatchObject({ priority: 6, mappingId: 'm-always' }); // Wednesday 18:00 EST
  });
});

describe('buildAllow: mutations', () => {
  it('strips client credentials, injects the bearer secret, priority and tenant', () => {
    const auth = authorize(view(KEYS.vip, { headers: { authorization: `Bearer ${KEYS.vip}`, 'x-api-key': KEYS.vip } }), ON) as Authorized;
    const allow = buildAllow(auth, account('openai-1'));
    expect(allow).toEqual({
      kind: 'allow',
      keyId: 'key-vip',
      accountId: 'acct-openai-1',
      accountName: 'openai-1',
      priority: 0,
      tenant: 'key-tenant',
      removeHeaders: ['authorization', 'x-api-key', 'x-keypool-priority', 'x-keypool-tenant'],
      setHeaders: [
        ['authorization', 'Bearer sk-openai-1-secret'],
        ['x-keypool-priority', '0'],
        ['x-keypool-tenant', 'key-tenant'],
      ],
    });
  });

  it("removes the provider's own auth header even when the client key came elsewhere", () => {
    const auth = authorize(view(null, { headers: { authorization: `Bearer ${KEYS.plain}` }, provider: 'anthropic' })) as Authorized;
    const allow = buildAllow(auth, account('anthropic-1'));
    expect(allow.removeHeaders).toEqual(['authorization', 'x-api-key', 'x-keypool-priority', 'x-keypool-tenant']);
    expect(allow.setHeaders).toEqual([
      ['x-api-key', 'sk-anthropic-1-secret'],
      ['x-keypool-priority', '7'],
    ]);
    expect(allow.tenant).toBeNull();
  });

  // Whatever the route's key headers are, no header a provider reads as a credential reaches it from the client: a
  // second copy of the client key (`authorization` beside the configured `x-api-key`), nor the client's own key.
  describe.each<[string, string, string]>([
    ['openai', 'authorization', 'Bearer sk-openai-1-secret'],
    ['anthropic', 'x-api-key', 'sk-anthropic-1-secret'],
    ['azure-openai', 'api-key', 'sk-azure-openai-1-secret'],
    ['gemini', 'x-goog-api-key', 'sk-gemini-1-secret'],
  ])('every client credential header is removed: %s (%s style)', (provider, authHeader, pooled) => {
    it.each<[string, readonly string[]]>([
      ['key in x-api-key only', ['x-api-key']],
      ['key in authorization only', ['authorization']],
      ['default key headers', DEFAULT_KEY_HEADERS],
    ])('%s', (_label, keyHeaders) => {
      const headers: Record<string, string> = {
        authorization: `Bearer ${KEYS.plain}`,
        'x-api-key': KEYS.plain,
        'api-key': KEYS.plain,
        // x-goog-api-key is a key header by default (Gemini's SDK sends its key there): then it carries the client
        // key too; on routes that read other headers only, it is the client's own Google key, stripped all the same.
        'x-goog-api-key': keyHeaders.includes('x-goog-api-key') ? KEYS.plain : 'AIza-clients-own-key',
        'proxy-authorization': 'Basic Y2xpZW50OnNlY3JldA==',
        accept: 'application/json',
      };
      const auth = authorizeRequest({ headers, clientAddress: null, provider, keyHeaders }, OFF, NOW, DEFAULT_KEY_HEADERS) as Authorized;
      expect(auth.kind).toBe('authorized');
      const allow = buildAllow(auth, account(`${provider}-1`));
      for (const name of CLIENT_CREDENTIAL_HEADERS) expect(allow.removeHeaders).toContain(name);
      expect(allow.removeHeaders).not.toContain('accept');
      expect(allow.setHeaders.filter(([name]) => CLIENT_CREDENTIAL_HEADERS.includes(name))).toEqual([[authHeader, pooled]]);
    });
  });

  it('a different key in x-goog-api-key beside the client key is ambiguous with the default key headers: 401', () => {
    const headers = { authorization: `Bearer ${KEYS.plain}`, 'x-goog-api-key': 'AIza-clients-own-key' };
    expect(authorizeRequest({ headers, clientAddress: null, provider: 'gemini' }, OFF, NOW, DEFAULT_KEY_HEADERS)).toMatchObject({
      kind: 'deny',
      code: 'invalid_api_key',
    });
  });

  // Google reads `?key=` as its API key too: keypool never forwards one (a client credential reaching the provider,
  // which might even prefer it over the pooled key and then call the pooled account invalid).
  it.each<[string, string, string, string | null]>([
    ['gemini', '/v1beta/models/gemini-pro:generateContent?key=AIza-clients-own', 'refused', 'key'],
    ['gemini', '/v1beta/models/gemini-pro:streamGenerateContent?alt=sse&key=x', 'refused', 'key'],
    ['gemini', '/v1beta/models/gemini-pro:generateContent?%6Bey=x', 'refused', 'key'],
    ['gemini', '/v1beta/models/gemini-pro:generateContent?key', 'refused', 'key'],
    ['gemini', '/v1beta/models/gemini-pro:streamGenerateContent?alt=sse', 'allowed', null],
    ['gemini', '/v1beta/models/gemini-pro:generateContent?monkey=1&keys=2', 'allowed', null],
    ['gemini', '/v1beta/models/key=x:generateContent', 'allowed', null],
    ['openai', '/v1/chat/completions?key=x', 'allowed', null],
  ])('%s %s: %s', (provider, path, outcome, parameter) => {
    const result = authorizeRequest({ headers: { authorization: `Bearer ${KEYS.plain}`, ':path': path }, clientAddress: null, provider }, OFF, NOW, DEFAULT_KEY_HEADERS);
    if (outcome === 'allowed') {
      expect(result.kind).toBe('authorized');
      return;
    }
    expect(result).toMatchObject({ kind: 'deny', status: 400, code: 'invalid_request' });
    expect((result as Deny).message).toContain(`"${parameter}" query parameter`);
  });

  it('never lets a client-sent x-keypool-tenant through when the tenant is unknown', () => {
    const auth = authorize(view(KEYS.plain)) as Authorized;
    const allow = buildAllow(auth, account('openai-1'));
    expect(allow.removeHeaders).toContain('x-keypool-tenant');
    expect(allow.setHeaders.map(([name]) => name)).not.toContain('x-keypool-tenant');
  });

  it('drops a tenant that would break the header mutation', () => {
    const auth: Authorized = {
      ...(authorize(view(KEYS.plain)) as Authorized),
      priority: { priority: 3, tenantId: 'bad\r\ntenant', tenantName: null, mappingId: null },
    };
    const allow = buildAllow(auth, account('openai-1'));
    expect(allow.tenant).toBeNull();
    expect(allow.setHeaders).toHaveLength(2);
  });
});

describe('denyForAdmission', () => {
  it.each<['exhausted' | 'unhealthy', number | null, number, string, string | null]>([
    ['exhausted', NOW + 12_500, 429, 'pool_exhausted', '13'],
    ['exhausted', null, 429, 'pool_exhausted', '1'],
    ['exhausted', NOW - 5_000, 429, 'pool_exhausted', '1'],
    ['unhealthy', null, 503, 'no_healthy_account', null],
    ['unhealthy', NOW + 30_000, 503, 'no_healthy_account', '30'],
  ])('%s until %j -> %d %s retry-after %s', (reason, retryAtMs, status, code, retryAfter) => {
    const denial = denyForAdmission(reason, retryAtMs, NOW);
    expect(denial).toMatchObject({ kind: 'deny', status, code });
    expect(denial.headers).toEqual(retryAfter === null ? [] : [['retry-after', retryAfter]]);
  });
});
