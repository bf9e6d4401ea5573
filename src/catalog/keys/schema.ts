// Client (system) API keys: what an operator may ask for, validated. Used by the CLI, the admin API and the key DAO.
import { IMPORTED_KEY_BYTES, KEY_PREFIX, LIMITS } from '../rules.js';
import {
  checkAllowedIps,
  checkDurationMs,
  checkFutureInstant,
  checkInt,
  checkLimit,
  checkTokenDayLimit,
  checkName,
  checkTenantId,
  fail,
  failure,
  Fields,
  notAnObject,
  nullable,
  pass,
  quote,
  type Check,
  type Validated,
} from '../validated.js';

/** Grace window of a rotation when the caller names none: the old key keeps working this long. */
export const DEFAULT_ROTATE_GRACE_MS = 24 * 3_600_000;

/** A new key. Optional fields may be left out by code that builds one directly (tests, the demo seed). */
export interface NewKey {
  /** Unique among active keys. */
  readonly name: string;
  readonly tenantId?: string | null;
  /** Normalised, de-duplicated CIDRs; empty or absent = any address. */
  readonly allowedIps?: readonly string[];
  readonly expiresAt?: Date | null;
  readonly rotateAfterDays?: number | null;
  /** Issued keys read `kp_<prefix>_<random>` (KEY_PREFIX); null = `kp_<random>`. Ignored for imported keys. */
  readonly prefix?: string | null;
  /** Requests per minute (sliding 60 s) of this key across every provider; null = unlimited. */
  readonly rpmLimit?: number | null;
  /** Requests per calendar day (KEYPOOL_QUOTA_TZ) of this key; null = unlimited. */
  readonly rpdLimit?: number | null;
  /** Tokens per minute (sliding 60 s; estimates reserved, then reconciled with usage) of this key; null = unlimited. */
  readonly tpmLimit?: number | null;
  /** Tokens per calendar day (KEYPOOL_QUOTA_TZ) of this key; null = unlimited. */
  readonly tpdLimit?: number | null;
}

/** Only the fields present change; null clears a nullable field. */
export interface KeyPatch {
  readonly name?: string;
  readonly tenantId?: string | null;
  readonly allowedIps?: readonly string[];
  readonly expiresAt?: Date | null;
  readonly rotateAfterDays?: number | null;
  readonly rpmLimit?: number | null;
  readonly rpdLimit?: number | null;
  readonly tpmLimit?: number | null;
  readonly tpdLimit?: number | null;
}

export interface Rotate {
  readonly graceMs: number;
}

const KEY_FIELDS = ['name', 'tenantId', 'allowedIps', 'expiresIn', 'expiresAt', 'rotateAfterDays', 'rpmLimit', 'rpdLimit', 'tpmLimit', 'tpdLimit'];
const NEW_KEY_FIELDS = [...KEY_FIELDS, 'prefix'];

/** A new system (client) key. `nowMs` anchors `expiresIn` and the "in the future" check of `expiresAt`. */
export function validateNewKey(input: unknown, nowMs: number): Validated<Required<Omit<NewKey, 'rpmLimit' | 'rpdLimit' | 'tpmLimit' | 'tpdLimit'>> & NewKey> {
  const f = Fields.of(input, NEW_KEY_FIELDS);
  if (!f) return notAnObject();
  const name = f.required('name', checkName);
  const tenantId = f.optional('tenantId', nullable(checkTenantId)) ?? null;
  const allowedIps = f.optional('allowedIps', checkAllowedIps) ?? [];
  const expiresAt = readExpiry(f, nowMs, false) ?? null;
  const rotateAfterDays = f.optional('rotateAfterDays', nullable(checkRotateAfterDays)) ?? null;
  const prefix = f.optional('prefix', nullable(checkKeyPrefix)) ?? null;
  const rpmLimit = f.optional('rpmLimit', nullable(checkLimit)) ?? null;
  const rpdLimit = f.optional('rpdLimit', nullable(checkLimit)) ?? null;
  const tpmLimit = f.optional('tpmLimit', nullable(checkLimit)) ?? null;
  const tpdLimit = f.optional('tpdLimit', nullable(checkTokenDayLimit)) ?? null;
  // Quotas appear only when set, so a key without them reads exactly as before they existed.
  const quotas = {
    ...(rpmLimit === null ? {} : { rpmLimit }),
    ...(rpdLimit === null ? {} : { rpdLimit }),
    ...(tpmLimit === null ? {} : { tpmLimit }),
    ...(tpdLimit === null ? {} : { tpdLimit }),
  };
  return f.result(() => ({ name: name!, tenantId, allowedIps, expiresAt, rotateAfterDays, prefix, ...quotas }));
}

/**
 * An existing client key to import (`keys import`, `import_key`, keypool.yaml `import:`): 16-512 UTF-8 bytes without
 * whitespace or control characters, which is what the request path accepts in a header. Never quoted in a message.
 */
export function validateImportedKey(value: unknown, field = 'key'): Validated<string> {
  if (typeof value !== 'string') return failure(field, 'invalid_type', `${field}: must be a string`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < IMPORTED_KEY_BYTES.min) return failure(field, 'too_short', `${field}: must be at least ${IMPORTED_KEY_BYTES.min} bytes (got ${bytes})`);
  if (bytes > IMPORTED_KEY_BYTES.max) return failure(field, 'too_long', `${field}: must be at most ${IMPORTED_KEY_BYTES.max} bytes (got ${bytes})`);
  if (/[\s\p{Cc}\p{Z}]/u.test(value)) return failure(field, 'invalid_format', `${field}: must not contain whitespace or control characters`);
  return { ok: true, value };
}

function checkKeyPrefix(value: unknown): Check<string> {
  if (typeof value !== 'string') return fail('invalid_type', 'must be a string');
  if (!KEY_PREFIX.test(value)) return fail('invalid_format', `${quote(value)} must be 1-32 letters, digits or inner dashes (no underscore)`);
  return pass(value);
}

/** A change to a system key. At least one field; `expiresAt: null` removes the expiry. */
export function validateKeyPatch(input: unknown, nowMs: number): Validated<KeyPatch> {
  const f = Fields.of(input, KEY_FIELDS);
  if (!f) return notAnObject();
  const patch: { -readonly [K in keyof KeyPatch]: KeyPatch[K] } = {};
  if (f.has('name')) patch.name = f.required('name', checkName);
  if (f.has('tenantId')) patch.tenantId = f.required('tenantId', nullable(checkTenantId));
  if (f.has('allowedIps')) patch.allowedIps = f.required('allowedIps', checkAllowedIps);
  const expiresAt = readExpiry(f, nowMs, true);
  if (expiresAt !== undefined) patch.expiresAt = expiresAt;
  if (f.has('rotateAfterDays')) patch.rotateAfterDays = f.required('rotateAfterDays', nullable(checkRotateAfterDays));
  if (f.has('rpmLimit')) patch.rpmLimit = f.required('rpmLimit', nullable(checkLimit));
  if (f.has('rpdLimit')) patch.rpdLimit = f.required('rpdLimit', nullable(checkLimit));
  if (f.has('tpmLimit')) patch.tpmLimit = f.required('tpmLimit', nullable(checkLimit));
  if (f.has('tpdLimit')) patch.tpdLimit = f.required('tpdLimit', nullable(checkTokenDayLimit));
  f.requireSome();
  return f.result(() => patch);
}

/**
 * A key rotation. The grace window comes as `grace` (human duration `24h`, `0s`), `graceSeconds` or `graceMs`
 * (non-negative integers); at most one of them; none = DEFAULT_ROTATE_GRACE_MS. Range 0..30 days.
 */
export function validateRotate(input: unknown): Validated<Rotate> {
  const f = Fields.of(input ?? {}, ['grace', 'graceSeconds', 'graceMs']);
  if (!f) return notAnObject();
  const given = (['grace', 'graceSeconds', 'graceMs'] as const).filter((k) => f.has(k));
  if (given.length > 1) {
    f.add(given[1]!, 'conflicting_fields', `${given[1]!}: give only one of ${given.join(', ')}`);
    return f.result(() => ({ graceMs: 0 }));
  }
  let graceMs: number | undefined = DEFAULT_ROTATE_GRACE_MS;
  if (f.has('grace')) graceMs = f.required('grace', checkDurationMs({ min: 0, max: LIMITS.graceMaxMs }));
  if (f.has('graceSeconds')) {
    const seconds = f.required('graceSeconds', checkInt({ min: 0, max: LIMITS.graceMaxMs / 1000 }));
    graceMs = seconds === undefined ? undefined : seconds * 1000;
  }
  if (f.has('graceMs')) graceMs = f.required('graceMs', checkInt({ min: 0, max: LIMITS.graceMaxMs }));
  return f.result(() => ({ graceMs: graceMs! }));
}

function checkRotateAfterDays(value: unknown): Check<number> {
  return checkInt({ min: LIMITS.rotateAfterDaysMin, max: LIMITS.rotateAfterDaysMax })(value);
}

/** `expiresIn` (duration from now) or `expiresAt` (instant); in a patch, null in either removes the expiry. */
function readExpiry(f: Fields, nowMs: number, patch: boolean): Date | null | undefined {
  const hasIn = f.has('expiresIn');
  const hasAt = f.has('expiresAt');
  if (hasIn && hasAt) {
    f.add('expiresAt', 'conflicting_fields', 'expiresAt: give expiresIn or expiresAt, not both');
    return undefined;
  }
  if (hasIn) {
    const ms = f.required('expiresIn', nullable(checkDurationMs({ min: 1000, max: LIMITS.expiresInMaxMs })));
    if (ms === undefined) return undefined;
    return ms === null ? (patch ? null : undefined) : new Date(nowMs + ms);
  }
  if (hasAt) {
    const at = f.required('expiresAt', nullable(checkFutureInstant(nowMs)));
    return at === null && !patch ? undefined : at;
  }
  return undefined;
}
