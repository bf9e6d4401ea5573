// Tenants: a tenant id (TENANT_ID) that keys and mappings carry, with a name and request quotas. Validated here for
// the CLI, the admin API, keypool.yaml and the DAO.
import {
  checkLimit,
  checkTokenDayLimit,
  checkName,
  checkTenantId,
  Fields,
  notAnObject,
  nullable,
  type Validated,
} from '../validated.js';

export interface NewTenant {
  readonly id: string;
  readonly name: string;
  /** Requests per minute (sliding 60 s) of every key of the tenant together; null = unlimited. */
  readonly rpmLimit?: number | null;
  /** Requests per calendar day of KEYPOOL_QUOTA_TZ; null = unlimited. */
  readonly rpdLimit?: number | null;
  /** Tokens per minute (sliding 60 s) of every key of the tenant together; null = unlimited. */
  readonly tpmLimit?: number | null;
  /** Tokens per calendar day of KEYPOOL_QUOTA_TZ; null = unlimited. */
  readonly tpdLimit?: number | null;
}

/** Only the fields present change; null clears a limit. The id never changes. */
export interface TenantPatch {
  readonly name?: string;
  readonly rpmLimit?: number | null;
  readonly rpdLimit?: number | null;
  readonly tpmLimit?: number | null;
  readonly tpdLimit?: number | null;
}

const PATCH_FIELDS = ['name', 'rpmLimit', 'rpdLimit', 'tpmLimit', 'tpdLimit'];

export function validateNewTenant(input: unknown): Validated<Required<NewTenant>> {
  const f = Fields.of(input, ['id', ...PATCH_FIELDS]);
  if (!f) return notAnObject();
  const id = f.required('id', checkTenantId);
  // The name defaults to the id: a tenant created only to give it limits needs no second label.
  const name = f.optional('name', checkName) ?? id;
  const rpmLimit = f.optional('rpmLimit', nullable(checkLimit)) ?? null;
  const rpdLimit = f.optional('rpdLimit', nullable(checkLimit)) ?? null;
  const tpmLimit = f.optional('tpmLimit', nullable(checkLimit)) ?? null;
  const tpdLimit = f.optional('tpdLimit', nullable(checkTokenDayLimit)) ?? null;
  return f.result(() => ({ id: id!, name: name!, rpmLimit, rpdLimit, tpmLimit, tpdLimit }));
}

export function validateTenantPatch(input: unknown): Validated<TenantPatch> {
  const f = Fields.of(input, PATCH_FIELDS);
  if (!f) return notAnObject();
  const patch: { -readonly [K in keyof TenantPatch]: TenantPatch[K] } = {};
  if (f.has('name')) patch.name = f.required('name', checkName);
  if (f.has('rpmLimit')) patch.rpmLimit = f.required('rpmLimit', nullable(checkLimit));
  if (f.has('rpdLimit')) patch.rpdLimit = f.required('rpdLimit', nullable(checkLimit));
  if (f.has('tpmLimit')) patch.tpmLimit = f.required('tpmLimit', nullable(checkLimit));
  if (f.has('tpdLimit')) patch.tpdLimit = f.required('tpdLimit', nullable(checkTokenDayLimit));
  f.requireSome();
  return f.result(() => patch);
}
