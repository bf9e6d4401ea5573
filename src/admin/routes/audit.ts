// The audit log, newest first, keyset-paginated (`next_cursor` -> `cursor`).
import type { AuditAction } from '../../core/types.js';
import type { AdminDeps } from '../deps.js';
import { onlyQuery, queryChoice, queryInstant, queryInt, queryUuid } from '../input.js';
import { presentAudit } from '../present.js';
import type { RouteDef } from '../router.js';

export const AUDIT_ACTIONS = [
  'created',
  'updated',
  'rotated',
  'revoked',
  'deleted',
  'denied_ip',
  'denied_expired',
  'denied_revoked',
  'account_created',
  'account_updated',
  'account_disabled',
  'account_enabled',
  'account_invalidated',
  'account_deleted',
  'mapping_created',
  'mapping_updated',
  'mapping_deleted',
  'tenant_created',
  'tenant_updated',
  'tenant_deleted',
  'config_set',
  'audit_pruned',
] as const satisfies readonly AuditAction[];

// Compile-time check that the list above names every AuditAction.
type MissingAction = Exclude<AuditAction, (typeof AUDIT_ACTIONS)[number]>;
const everyActionListed: [MissingAction] extends [never] ? true : MissingAction = true;
void everyActionListed;

export function auditRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: '/admin/audit',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['key_id', 'action', 'since', 'limit', 'cursor']);
        const page = await deps.repository.audit.list({
          keyId: queryUuid(ctx, 'key_id'),
          action: queryChoice(ctx, 'action', AUDIT_ACTIONS),
          since: queryInstant(ctx, 'since'),
          limit: queryInt(ctx, 'limit', 1, 1000) ?? 100,
          cursor: queryUuid(ctx, 'cursor'),
        });
        return { status: 200, body: { items: page.rows.map(presentAudit), next_cursor: page.nextCursor } };
      },
    },
  ];
}
