// System (client) API keys. A new or rotated key is in exactly one response body (`api_key`) and nowhere else:
// the store keeps only its HMAC digest and display prefix.
import type { AdminDeps } from '../deps.js';
import { checkIdempotencyKey } from '../idempotency.js';
import { badRequest } from '../http-errors.js';
import { bodyInput, onlyQuery, optionalBodyInput, queryBool, queryChoice, queryInt, queryString, reasonInput, valid } from '../input.js';
import { presentKey } from '../present.js';
import type { RouteDef } from '../router.js';
import type { IssuedKey } from '../../catalog/keys/dao.js';
import { validateImportedKey, validateKeyPatch, validateNewKey, validateRotate } from '../../catalog/keys/schema.js';
import { isPlainObject } from '../../catalog/validated.js';

export const SHOWN_ONCE_NOTICE = 'Store api_key now: it is shown only once and cannot be retrieved again.';
const ROTATE_SCOPE = 'keys.rotate';
/** Largest page of GET /admin/keys?limit=. */
const MAX_PAGE = 500;

/** next_cursor is the last name of the page, base64url-encoded (names may hold any character). */
function cursorName(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw badRequest('invalid_parameter', 'cursor must be a next_cursor value', 'cursor');
  return Buffer.from(cursor, 'base64url').toString('utf8');
}

export function keyRoutes(deps: AdminDeps): RouteDef[] {
  const now = () => deps.clock.nowMs();
  const issued = (result: IssuedKey) => ({
    key: presentKey(result.row, now()),
    api_key: result.plaintextKey,
    notice: SHOWN_ONCE_NOTICE,
  });
  return [
    {
      method: 'POST',
      path: '/admin/keys',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        // `import_key`: a key the client already holds. Only its digest is stored and it is never echoed back (the
        // caller has it), so the answer carries no api_key.
        const body = bodyInput(ctx);
        const { importKey, ...rest } = isPlainObject(body) ? body : { importKey: undefined };
        const input = valid(validateNewKey(isPlainObject(body) ? rest : body, now()));
        if (importKey !== undefined) {
          const row = await deps.repository.keys.import(input, valid(validateImportedKey(importKey, 'importKey')), ctx.actor);
          return { status: 201, body: { key: presentKey(row, now()) }, headers: { location: `/admin/keys/${row.id}` } };
        }
        const result = await deps.repository.keys.create(input, ctx.actor);
        return { status: 201, body: issued(result), headers: { location: `/admin/keys/${result.row.id}` } };
      },
    },
    {
      method: 'GET',
      path: '/admin/keys',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, ['due', 'status', 'tenant_id', 'q', 'limit', 'cursor']);
        const due = queryBool(ctx, 'due') ?? false;
        const status = queryChoice(ctx, 'status', ['active', 'revoked'] as const);
        const tenantId = queryString(ctx, 'tenant_id', 64);
        const search = queryString(ctx, 'q', 200);
        // Without limit every match is listed (scripts); with it, pages by name and next_cursor continues.
        const limit = queryInt(ctx, 'limit', 1, MAX_PAGE);
        const afterName = cursorName(queryString(ctx, 'cursor', 400));
        const nowMs = now();
        const rows = await deps.repository.keys.list({
          dueForRotation: due,
          now: new Date(nowMs),
          status,
          tenantId,
          search,
          afterName,
          limit: limit === undefined ? undefined : limit + 1,
        });
        const page = limit === undefined ? rows : rows.slice(0, limit);
        const last = page[page.length - 1];
        const nextCursor = limit !== undefined && rows.length > limit && last ? Buffer.from(last.name, 'utf8').toString('base64url') : null;
        return { status: 200, body: { items: page.map((row) => presentKey(row, nowMs)), next_cursor: nextCursor } };
      },
    },
    {
      method: 'GET',
      path: '/admin/keys/:id',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        return { status: 200, body: { key: presentKey(await deps.repository.keys.get(ctx.params.id!), now()) } };
      },
    },
    {
      method: 'PATCH',
      path: '/admin/keys/:id',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const patch = valid(validateKeyPatch(bodyInput(ctx), now()));
        const row = await deps.repository.keys.update(ctx.params.id!, patch, ctx.actor);
        return { status: 200, body: { key: presentKey(row, now()) } };
      },
    },
    {
      method: 'DELETE',
      path: '/admin/keys/:id',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        await deps.repository.keys.softDelete(ctx.params.id!, ctx.actor);
        return { status: 204 };
      },
    },
    {
      method: 'POST',
      path: '/admin/keys/:id/rotate',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const { graceMs } = valid(validateRotate(optionalBodyInput(ctx)));
        const id = ctx.params.id!;
        const idempotencyKey = checkIdempotencyKey(ctx.header('idempotency-key'));
        if (idempotencyKey === undefined) {
          return { status: 200, body: issued(await deps.repository.keys.rotate(id, graceMs, ctx.actor)) };
        }
        // Claim, rotation and remembered answer commit together: a retry (any replica) gets the same new key.
        const reply = await deps.transaction((tx) =>
          deps.idempotency.run(
            tx.sql,
            { scope: ROTATE_SCOPE, resourceId: id, idempotencyKey, request: { graceMs }, actor: ctx.actor },
            async () => ({ status: 200, body: issued(await tx.repository.keys.rotate(id, graceMs, ctx.actor)) }),
          ),
        );
        return { status: reply.status, body: reply.body, headers: { 'idempotent-replayed': String(reply.replayed) } };
      },
    },
    {
      method: 'POST',
      path: '/admin/keys/:id/revoke',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const reason = reasonInput(ctx);
        const row = await deps.repository.keys.revoke(ctx.params.id!, ctx.actor, reason);
        return { status: 200, body: { key: presentKey(row, now()) } };
      },
    },
  ];
}
