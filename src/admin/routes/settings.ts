// Runtime settings (today: the priority settings `keypool config set` also writes).
import type { AdminDeps } from '../deps.js';
import { unprocessable } from '../http-errors.js';
import { onlyQuery, valid } from '../input.js';
import { presentSettings } from '../present.js';
import type { RouteDef } from '../router.js';
import { validateSetting } from '../../catalog/settings/schema.js';

export function settingRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: '/admin/settings',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        return { status: 200, body: { settings: presentSettings(await deps.repository.settings.get()) } };
      },
    },
    {
      method: 'PUT',
      path: '/admin/settings/:name',
      access: 'token',
      handler: async (ctx) => {
        onlyQuery(ctx, []);
        const body = ctx.body;
        if (typeof body !== 'object' || body === null || Array.isArray(body) || !('value' in body)) {
          throw unprocessable('required', 'the body must be {"value": ...}', 'value');
        }
        const extra = Object.keys(body).find((k) => k !== 'value');
        if (extra !== undefined) throw unprocessable('unknown_field', 'unknown field; known: value', extra);
        const setting = valid(validateSetting(ctx.params.name, (body as { value: unknown }).value));
        const settings = await deps.repository.settings.set(setting.name, setting.value, ctx.actor);
        return { status: 200, body: { settings: presentSettings(settings) } };
      },
    },
  ];
}
