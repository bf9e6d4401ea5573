// compileSnapshot on hand-built ConfigData: no database.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { digestKey } from '../../src/core/apikey.js';
import { Keyring } from '../../src/secrets/keyring.js';
import type { MappingRow } from '../../src/catalog/mappings/rows.js';
import { compileSnapshot } from '../../src/snapshot/compile.js';
import type { StoredAccount } from '../../src/catalog/accounts/rows.js';
import type { ConfigData } from '../../src/catalog/config-data.js';
import type { RateLimitDialect } from '../../src/core/types.js';
import type { StoredKey } from '../../src/catalog/keys/rows.js';

const NOW = Date.parse('2030-01-01T00:00:00Z');
const keyring = Keyring.parse(Keyring.generateSpec('v1'));
const pepper = new Uint8Array(randomBytes(32));
const deps = { keyring, pepper };
let seq = 0;
const uuid = () => `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;

function account(providerSlug: string, name: string, tier: number, extra: Partial<StoredAccount> = {}): StoredAccount {
  const id = uuid();
  const encrypted = keyring.encrypt(`secret-${name}`, id);
  return {
    id,
    providerId: `p-${providerSlug}`,
    providerSlug,
    name,
    keyLast4: '',
    keyVersion: encrypted.keyVersion,
    encryptedKey: encrypted.ciphertext,
    weight: 1,
    tier,
    rpmLimit: null,
    tpmLimit: null,
    maxConcurrency: null,
    models: [],
    scope: null,
    status: 'active',
    disabledReason: null,
    tags: {},
    createdAt: new Date(NOW),
    updatedAt: new Date(NOW),
    ...extra,
  };
}

function key(name: string, plaintext: string, extra: Partial<StoredKey> = {}): StoredKey {
  return {
    id: uuid(),
    name,
    tenantId: 'acme',
    keyPrefix: plaintext.slice(0, 11),
    status: 'active',
    rpmLimit: null,
    rpdLimit: null,
    expiresAt: null,
    allowedIps: [],
    rotateAfterDays: null,
    lastRotatedAt: null,
    previousKeyExpiresAt: null,
    lastUsedAt: null,
    createdAt: new Date(NOW),
    updatedAt: new Date(NOW),
    keyHash: digestKey(pepper, plaintext),
    previousKeyHash: null,
    ...extra,
  };
}

function data(overrides: Partial<ConfigData> = {}): ConfigData {
  return {
    readAt: new Date(NOW),
    configVersion: 42,
    providers: [
      { id: 'p-openai', slug: 'openai', displayName: 'OpenAI', authStyle: 'bearer', rateLimitDialect: 'openai', defaultStrategy: 'priority', perModelState: false },
      { id: 'p-anthropic', slug: 'anthropic', displayName: 'Anthropic', authStyle: 'x-api-key', rateLimitDialect: 'anthropic', defaultStrategy: 'round-robin', perModelState: false },
    ],
    accounts: [],
    keys: [],
    mappings: [],
    settings: { enabled: false, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 },
    ...overrides,
  };
}

describe('compileSnapshot', () => {
  it('indexes current digests, previous digests still in grace, and revoked keys', () => {
    const current = key('rotated', 'kp_current', {
      previousKeyHash: digestKey(pepper, 'kp_previous'),
      previousKeyExpiresAt: new Date(NOW + 60_000),
      allowedIps: ['10.0.0.0/8'],
      expiresAt: new Date(NOW + 86_400_000),
    });
    const expiredGrace = key('expired-grace', 'kp_other', {
      previousKeyHash: digestKey(pepper, 'kp_old_other'),
      previousKeyExpiresAt: new Date(NOW - 1),
    });
    const revoked = key('revoked', 'kp_revoked', { status: 'revoked' });
    const snapshot = compileSnapshot(data({ keys: [current, expiredGrace, revoked] }), deps, 5, NOW);
    expect(snapshot.version).toBe(5);
    expect(snapshot.loadedAtMs).toBe(NOW);
    expect(snapshot.configVersion).toBe(42);
    const entry = snapshot.keysByDigest.get(snapshot.digestKey('kp_current'))!;
    expect(entry.graceEndsAtMs).toBeNull();
    expect(entry.key).toMatchObject({ id: current.id, tenantId: 'acme', status: 'active', expiresAtMs: NOW + 86_400_000 });
    expect(entry.key.allowlist?.contains('10.1.2.3')).toBe(true);
    expect(entry.key.allowlist?.contains('11.1.2.3')).toBe(false);
    expect(snapshot.keysByDigest.get(snapshot.digestKey('kp_previous'))).toMatchObject({ graceEndsAtMs: NOW + 60_000, key: { id: current.id } });
    expect(snapshot.keysByDigest.has(snapshot.digestKey('kp_old_other'))).toBe(false);
    expect(snapshot.keysByDigest.get(snapshot.digestKey('kp_revoked'))?.key.status).toBe('revoked');
    expect(snapshot.keysByDigest.get(snapshot.digestKey('kp_other'))?.key.allowlist).toBeNull();
    expect(snapshot.keysByDigest.size).toBe(4);
  });

  it('builds a pool per provider with active, decrypted accounts ordered by (tier, name)', () => {
    const accounts = [
      account('openai', 'zeta', 0),
      account('openai', 'alpha', 1),
      account('openai', 'beta', 0),
      account('openai', 'off', 0, { status: 'disabled' }),
      account('openai', 'bad', 0, { status: 'invalid' }),
    ];
    const snapshot = compileSnapshot(data({ accounts }), deps, 1, NOW);
    const pool = snapshot.pools.get('openai')!;
    expect(pool).toMatchObject({ slug: 'openai', authStyle: 'bearer', dialect: 'openai', strategy: 'priority' });
    expect(pool.accounts.map((a) => a.name)).toEqual(['beta', 'zeta', 'alpha']);
    expect(pool.accounts[0]!.secret).toBe('secret-beta');
    expect(snapshot.pools.get('anthropic')!.accounts).toEqual([]);
    expect(snapshot.warnings).toEqual([]);
  });

  // [dialect, per_model_state, an account restricts its models, needsModel]
  const needsModelCases: readonly [RateLimitDialect, boolean, boolean, boolean][] = [
    ['openai', false, false, false],
    ['openai', true, false, true],
    ['openai', false, true, true],
    ['openai', true, true, true],
    ['anthropic', true, false, true],
    ['azure', true, false, true],
    // No per-model limits in these dialects: the switch alone never makes a pool read bodies.
    ['gemini', true, false, false],
    ['none', true, false, false],
    ['gemini', false, true, true],
  ];
  it.each(needsModelCases)('needsModel: dialect %s, per_model_state %s, restricted %s -> %s', (dialect, perModelState, restricted, expected) => {
    const provider = { id: 'p-x', slug: 'x', displayName: 'X', authStyle: 'bearer', rateLimitDialect: dialect, defaultStrategy: 'round-robin', perModelState } as const;
    const accounts = [account('x', 'a', 0), account('x', 'b', 0, { models: restricted ? ['gpt-4o*'] : [] })];
    const snapshot = compileSnapshot(data({ providers: [provider], accounts }), deps, 1, NOW);
    expect(snapshot.pools.get('x')!.needsModel).toBe(expected);
  });

  it('token flags: a pool counts tokens when one of its accounts has a tpm_limit; any key or tenant token quota counts for every pool', () => {
    const tenant = (tpdLimit: number | null) => ({ id: 'acme', name: 'Acme', rpmLimit: 10, rpdLimit: null, tpmLimit: null, tpdLimit, createdAt: new Date(NOW), updatedAt: new Date(NOW) });
    const plain = compileSnapshot(data({ accounts: [account('openai', 'a', 0), account('openai', 'b', 0, { tpmLimit: 10_000 }), account('anthropic', 'c', 0)] }), deps, 1, NOW);
    expect([plain.pools.get('openai')!.countsTokens, plain.pools.get('anthropic')!.countsTokens, plain.anyTokenQuota]).toEqual([true, false, false]);
    expect(compileSnapshot(data({ tenants: [tenant(null)], keys: [key('rpm-only', 'kp_rpm', { rpmLimit: 5 })] }), deps, 1, NOW).anyTokenQuota).toBe(false);
    expect(compileSnapshot(data({ tenants: [tenant(1_000_000)] }), deps, 1, NOW).anyTokenQuota).toBe(true);
    expect(compileSnapshot(data({ keys: [key('tpm', 'kp_tpm', { tpmLimit: 5_000 })] }), deps, 1, NOW).anyTokenQuota).toBe(true);
  });

  it.each<[string, 'bearer' | 'api-key' | 'x-goog-api-key', RateLimitDialect, boolean, boolean]>([
    ['openai, no model restriction', 'bearer', 'openai', false, false],
    ['openai, an account restricts models', 'bearer', 'openai', true, true],
    ['azure (the deployment in the path)', 'api-key', 'azure', false, true],
    ['gemini (a key may come in the query)', 'x-goog-api-key', 'gemini', false, true],
  ])('readsPath: %s -> %s', (_label, authStyle, dialect, restricted, expected) => {
    const provider = { id: 'p-x', slug: 'x', displayName: 'X', authStyle, rateLimitDialect: dialect, defaultStrategy: 'round-robin', perModelState: false } as const;
    const accounts = [account('x', 'a', 0, { models: restricted ? ['gpt-4o*'] : [] })];
    expect(compileSnapshot(data({ providers: [provider], accounts }), deps, 1, NOW).pools.get('x')!.readsPath).toBe(expected);
  });

  it('compiles mapping windows; resolution follows the instant asked about; an unknown zone is a warning, not a failure', () => {
    const row = (pattern: string, priority: number, window: MappingRow['window']): MappingRow => ({
      id: uuid(), pattern, matchType: 'prefix', priority, tenantId: null, tenantName: null, tenantType: null, description: null, enabled: true, window, createdAt: new Date(NOW),
    });
    const day = row('kp_batch-', 7, { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '20:00', timezone: 'Europe/Berlin' });
    const fallback = row('kp_batch-', 3, null);
    const stale = row('kp_old-', 1, { days: ['mon'], start: '08:00', end: '09:00', timezone: 'Atlantis/Capital' });
    const snapshot = compileSnapshot(data({ mappings: [day, fallback, stale], settings: { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 } }), deps, 1, NOW);
    expect(snapshot.priority.size).toBe(2);
    expect(snapshot.priority.timedSize).toBe(1);
    expect(snapshot.warnings).toEqual([{ kind: 'mapping', id: stale.id, message: expect.stringMatching(/^window: .*Atlantis\/Capital/) }]);
    expect(snapshot.priority.resolve('kp_batch-1', Date.parse('2030-01-02T10:00:00Z')).mappingId).toBe(day.id); // Wednesday 11:00 CET
    expect(snapshot.priority.resolve('kp_batch-1', Date.parse('2030-01-05T10:00:00Z')).mappingId).toBe(fallback.id); // Saturday
  });

  it('leaves out an account whose secret does not decrypt and reports it without the secret', () => {
    const good = account('openai', 'good', 0);
    const moved = { ...account('openai', 'moved', 0), id: uuid() }; // ciphertext bound to another id
    const unknown = account('openai', 'unknown-version', 0, { keyVersion: 'v9' });
    const snapshot = compileSnapshot(data({ accounts: [good, moved, unknown] }), deps, 1, NOW);
    expect(snapshot.pools.get('openai')!.accounts.map((a) => a.name)).toEqual(['good']);
    expect(snapshot.warnings.map((w) => [w.kind, w.id])).toEqual([
      ['account_secret', moved.id],
      ['account_secret', unknown.id],
    ]);
    expect(JSON.stringify(snapshot.warnings)).not.toContain('secret-moved');
  });

  it('compiles priority mappings with the settings', () => {
    const mappings = [
      { id: uuid(), pattern: 'kp_team', matchType: 'prefix' as const, priority: 2, tenantId: 't', tenantName: 'Team', tenantType: null, description: null, enabled: true, window: null, createdAt: new Date(NOW) },
      { id: uuid(), pattern: 'kp_off', matchType: 'prefix' as const, priority: 0, tenantId: null, tenantName: null, tenantType: null, description: null, enabled: false, window: null, createdAt: new Date(NOW) },
    ];
    const on = compileSnapshot(data({ mappings, settings: { enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 } }), deps, 1, NOW);
    expect(on.priority.resolve('kp_team_123', NOW)).toMatchObject({ priority: 2, tenantId: 't', mappingId: mappings[0]!.id });
    expect(on.priority.resolve('kp_off_1', NOW).priority).toBe(7);
    expect(on.prioritySettings).toEqual({ enabled: true, defaultPriority: 7, queueMaxWaitMs: 0, queueMaxLength: 1000 });
    const off = compileSnapshot(data({ mappings }), deps, 1, NOW);
    expect(off.priority.resolve('kp_team_123', NOW)).toMatchObject({ priority: 7, mappingId: null });
  });
});
