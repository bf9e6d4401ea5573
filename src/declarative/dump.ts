// The store as a keypool.yaml. Pure: CurrentState in, YAML text out. Fields at their default are left out (the file
// format reads a missing field as its default), so `keypool dump | keypool apply -f -` changes nothing. Secrets are
// never dumped: an account without `key` keeps its stored key, and client keys exist only as digests.
import { Document } from 'yaml';
import { ACCOUNT_DEFAULTS } from '../catalog/accounts/schema.js';
import { settingsByName } from '../catalog/settings/schema.js';
import { FORMAT_VERSION, type CurrentState } from './model.js';

const HEADER = [
  ' keypool configuration (keypool dump). Apply with: keypool apply -f keypool.yaml',
  ' Secrets are not dumped. An account without `key:` keeps its stored upstream key; to set or replace one,',
  ' reference it: key: {env: OPENAI_KEY_1} or key: {file: /run/secrets/openai-1}. Client keys are stored only',
  ' as digests: an existing key keeps working; `import: {env: VAR}` brings in a key you already have.',
].join('\n');

export function dumpConfig(state: CurrentState): string {
  const settings = settingsByName(state.settings);
  const body = {
    version: FORMAT_VERSION,
    settings,
    providers: state.providers.map((p) => compact({ slug: p.slug, strategy: p.defaultStrategy, per_model_state: p.perModelState ? true : undefined })),
    accounts: state.accounts.map((a) =>
      compact({
        provider: a.providerSlug,
        name: a.name,
        weight: a.weight === ACCOUNT_DEFAULTS.weight ? null : a.weight,
        tier: a.tier === ACCOUNT_DEFAULTS.tier ? null : a.tier,
        rpm: a.rpmLimit,
        tpm: a.tpmLimit,
        max_concurrency: a.maxConcurrency,
        tags: Object.keys(a.tags).length === 0 ? null : a.tags,
        models: a.models.length === 0 ? null : [...a.models],
        scope: a.scope,
        // `invalid` is keypool's observation, not configuration: it dumps as active (see the file format).
        status: a.status === 'disabled' ? 'disabled' : null,
      }),
    ),
    keys: state.keys.map((k) =>
      compact({
        name: k.name,
        tenant: k.tenantId,
        allowed_ips: k.allowedIps.length === 0 ? null : [...k.allowedIps],
        expires_at: k.expiresAt?.toISOString() ?? null,
        rotate_after_days: k.rotateAfterDays,
        rpm: k.rpmLimit,
        rpd: k.rpdLimit,
        tpm: k.tpmLimit ?? null,
        tpd: k.tpdLimit ?? null,
        status: k.status === 'revoked' ? 'revoked' : null,
      }),
    ),
    tenants: (state.tenants ?? []).map((t) =>
      compact({ id: t.id, name: t.name === t.id ? null : t.name, rpm: t.rpmLimit, rpd: t.rpdLimit, tpm: t.tpmLimit ?? null, tpd: t.tpdLimit ?? null }),
    ),
    prices: (state.prices ?? []).map((p) =>
      compact({
        provider: p.providerSlug,
        model: p.model,
        input: p.inputUsdPerMTok,
        output: p.outputUsdPerMTok,
        cached_input: p.cachedInputUsdPerMTok,
        cache_creation: p.cacheCreationUsdPerMTok,
      }),
    ),
    mappings: state.mappings.map((m) =>
      compact({
        match: m.matchType,
        pattern: m.pattern,
        priority: m.priority,
        tenant: m.tenantId,
        tenant_name: m.tenantName,
        tenant_type: m.tenantType,
        description: m.description,
        enabled: m.enabled ? null : false,
        window: m.window === null ? null : { days: [...m.window.days], start: m.window.start, end: m.window.end, timezone: m.window.timezone },
      }),
    ),
  };
  const doc = new Document(body);
  doc.commentBefore = HEADER;
  return doc.toString({ lineWidth: 0 });
}

/** Leaves out fields at their default (null). */
function compact(entry: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(entry).filter(([, value]) => value !== null && value !== undefined));
}
