// Priority mappings (presented key pattern -> priority and tenant). Every route here answers 501 while priority
// mapping is disabled, saying how to enable it.
import type { CompiledPriority } from '../../core/priority/index.js';
import type { PriorityMatcher } from '../../core/types.js';
import type { AdminDeps } from '../deps.js';
import { badRequest, HttpError, PRIORITY_DISABLED_MESSAGE } from '../http-errors.js';
import { bodyInput, onlyQuery, queryInstant, valid } from '../input.js';
import { presentMapping } from '../present.js';
import type { RequestContext, Reply, RouteDef } from '../router.js';
import { validateNewMapping } from '../../catalog/mappings/schema.js';

const BASE = '/admin/api-key-priority';

export function mappingRoutes(deps: AdminDeps): RouteDef[] {
  /** Reads the setting from the store (not the snapshot) so enabling takes effect for the very next request. */
  const whenEnabled = (handler: (ctx: RequestContext) => Promise<Reply>) => async (ctx: RequestContext) => {
    const settings = await deps.repository.settings.get();
    if (!settings.enabled) throw new HttpError(501, 'priority_disabled', PRIORITY_DISABLED_MESSAGE);
    return handler(ctx);
  };
  return [
    {
      method: 'GET',
      path: `${BASE}/mappings`,
      access: 'token',
      handler: whenEnabled(async (ctx) => {
        onlyQuery(ctx, []);
        return { status: 200, body: { items: (await deps.repository.mappings.list()).map(presentMapping) } };
      }),
    },
    {
      method: 'POST',
      path: `${BASE}/mappings`,
      access: 'token',
      handler: whenEnabled(async (ctx) => {
        onlyQuery(ctx, []);
        const mapping = valid(validateNewMapping(bodyInput(ctx)));
        const row = await deps.repository.mappings.create(mapping, ctx.actor);
        return { status: 201, body: { mapping: presentMapping(row) }, headers: { location: `${BASE}/mappings/${row.id}` } };
      }),
    },
    {
      method: 'PUT',
      path: `${BASE}/mappings/:id`,
      access: 'token',
      // PUT replaces the mapping: the body is a whole mapping, and optional fields left out return to their defaults.
      handler: whenEnabled(async (ctx) => {
        onlyQuery(ctx, []);
        const mapping = valid(validateNewMapping(bodyInput(ctx)));
        const row = await deps.repository.mappings.update(ctx.params.id!, mapping, ctx.actor);
        return { status: 200, body: { mapping: presentMapping(row) } };
      }),
    },
    {
      method: 'DELETE',
      path: `${BASE}/mappings/:id`,
      access: 'token',
      handler: whenEnabled(async (ctx) => {
        onlyQuery(ctx, []);
        await deps.repository.mappings.softDelete(ctx.params.id!, ctx.actor);
        return { status: 204 };
      }),
    },
    {
      method: 'POST',
      path: `${BASE}/reload`,
      access: 'token',
      handler: whenEnabled(async (ctx) => {
        onlyQuery(ctx, []);
        if (!(await deps.requestReload())) {
          throw new HttpError(
            503,
            'reload_failed',
            'every replica was told to reload, but this one failed to and keeps its last good snapshot; see its log',
          );
        }
        return { status: 200, body: { reloaded: true, snapshot_version: deps.snapshots.current()?.version ?? null } };
      }),
    },
    {
      method: 'GET',
      path: `${BASE}/resolve`,
      access: 'token',
      // Answers from this replica's compiled snapshot: exactly what a request presenting that key would get.
      // The presented value is never echoed back (it may be a whole key).
      handler: whenEnabled(async (ctx) => {
        onlyQuery(ctx, ['key_prefix', 'at']);
        const presented = ctx.query.get('key_prefix');
        if (presented === null || presented.length === 0 || presented.length > 512 || ctx.query.getAll('key_prefix').length > 1) {
          throw badRequest('invalid_parameter', 'key_prefix is required once (1-512 characters)', 'key_prefix');
        }
        const snapshot = deps.snapshots.current();
        if (!snapshot) throw new HttpError(503, 'not_ready', 'the configuration snapshot is not loaded yet');
        // `at` asks about another instant (a mapping's window); default: now.
        const atMs = queryInstant(ctx, 'at')?.getTime() ?? deps.clock.nowMs();
        const explained = explain(snapshot.priority, presented, atMs);
        return {
          status: 200,
          body: {
            priority: explained.resolution.priority,
            tenant_id: explained.resolution.tenantId,
            tenant_name: explained.resolution.tenantName,
            mapping_id: explained.resolution.mappingId,
            match_type: explained.matchType,
            pattern: explained.pattern,
            window: explained.window,
            at: new Date(atMs).toISOString(),
            default_applied: explained.resolution.mappingId === null,
            snapshot_version: snapshot.version,
          },
        };
      }),
    },
  ];
}

function explain(matcher: PriorityMatcher, presented: string, nowMs: number): ReturnType<CompiledPriority['explain']> {
  const compiled = matcher as Partial<CompiledPriority>;
  if (typeof compiled.explain === 'function') return compiled.explain(presented, nowMs);
  return { resolution: matcher.resolve(presented, nowMs), matchType: null, pattern: null, window: null };
}
