// The admin route table and its matcher. Routes are plain data (method, path template, access, handler), so the
// OpenAPI coverage test reads the same table the server serves.
import { HttpError, badRequest } from './http-errors.js';
import { isProviderSlug, isUuid } from '../catalog/rules.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * Who may call a route: `public` needs nothing (/healthz, /readyz); `metrics` needs the token unless the server says
 * metrics are open (loopback by default); `token` always needs the admin token when one is configured.
 */
export type Access = 'public' | 'metrics' | 'token';

/** What a handler sees of one request. The body is read (size-limited) and parsed before the handler runs. */
export interface RequestContext {
  readonly method: Method;
  readonly path: string;
  /** Path parameters, already checked: `id`/`*Id` are lower-case UUIDs, `slug` a provider slug. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** Parsed JSON body; undefined when the request had none. */
  readonly body: unknown;
  readonly requestId: string;
  /** Audit actor: the admin token's name. */
  readonly actor: string;
  readonly clientIp: string | null;
  /** The request arrived over TLS. */
  readonly secure: boolean;
  /** Lower-case request header (first value). */
  header(name: string): string | undefined;
}

export interface Reply {
  readonly status: number;
  /** Serialised as JSON unless `text` is given. */
  readonly body?: unknown;
  readonly text?: { readonly contentType: string; readonly content: string };
  readonly headers?: Readonly<Record<string, string>>;
}

export interface RouteDef {
  readonly method: Method;
  /** Template with `:param` segments, e.g. `/admin/providers/:slug/accounts/:id`. */
  readonly path: string;
  readonly access: Access;
  readonly handler: (ctx: RequestContext) => Promise<Reply>;
}

export interface RouteMatch {
  readonly route: RouteDef;
  readonly params: Record<string, string>;
}

const SETTING = /^[a-z0-9_.]{1,64}$/;
/** Longest path segment the router looks at; nothing legitimate comes close. */
const MAX_SEGMENT_CHARS = 200;

interface Compiled {
  readonly route: RouteDef;
  /** Literal segment, or null for a parameter named in `names` at the same index. */
  readonly segments: readonly (string | null)[];
  readonly names: readonly (string | null)[];
}

export class Router {
  private readonly compiled: readonly Compiled[];

  constructor(readonly routes: readonly RouteDef[]) {
    const seen = new Set<string>();
    this.compiled = routes.map((route) => {
      const id = `${route.method} ${route.path.replace(/:[A-Za-z]+/g, ':')}`;
      if (seen.has(id)) throw new Error(`duplicate admin route ${route.method} ${route.path}`);
      seen.add(id);
      const parts = route.path.split('/').slice(1);
      return {
        route,
        segments: parts.map((p) => (p.startsWith(':') ? null : p)),
        names: parts.map((p) => (p.startsWith(':') ? p.slice(1) : null)),
      };
    });
  }

  /**
   * The route for a method and path. Throws 404 for an unknown path, 405 (with `allow`) for a known path with another
   * method, and 400 for a malformed path parameter (the value is never echoed: it could be a secret pasted by mistake).
   */
  match(method: string, path: string): RouteMatch {
    const parts = path.split('/').slice(1);
    const candidates = this.compiled.filter((c) => sameShape(c, parts));
    if (candidates.length === 0) throw new HttpError(404, 'route_not_found', 'no such admin route');
    // Prefer literal segments over parameters (`/mappings/reload` vs `/mappings/:id`).
    const ranked = [...candidates].sort((a, b) => literalCount(b) - literalCount(a));
    const chosen = ranked.find((c) => c.route.method === method);
    if (!chosen) {
      const allow = [...new Set(candidates.map((c) => c.route.method))].join(', ');
      throw new HttpError(405, 'method_not_allowed', `use one of: ${allow}`, null, { allow });
    }
    return { route: chosen.route, params: readParams(chosen, parts) };
  }
}

function sameShape(compiled: Compiled, parts: readonly string[]): boolean {
  if (compiled.segments.length !== parts.length) return false;
  return compiled.segments.every((segment, i) => {
    const part = parts[i] ?? '';
    return segment === null ? part.length > 0 && part.length <= MAX_SEGMENT_CHARS : segment === part;
  });
}

function literalCount(compiled: Compiled): number {
  return compiled.segments.filter((s) => s !== null).length;
}

function readParams(compiled: Compiled, parts: readonly string[]): Record<string, string> {
  const params: Record<string, string> = {};
  compiled.names.forEach((name, i) => {
    if (name === null) return;
    params[name] = checkParam(name, decodeSegment(parts[i] ?? '', name));
  });
  return params;
}

function decodeSegment(raw: string, name: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest('invalid_path', `path parameter ${name} is not valid percent-encoding`, name);
  }
}

function checkParam(name: string, value: string): string {
  if (name === 'id' || name.endsWith('Id')) {
    if (!isUuid(value)) throw badRequest('invalid_uuid', `path parameter ${name} must be a UUID`, name);
    return value.toLowerCase();
  }
  if (name === 'slug') {
    if (!isProviderSlug(value)) throw badRequest('invalid_slug', 'path parameter slug must be a provider slug (a-z, 0-9, -)', name);
    return value;
  }
  if (name === 'name') {
    if (!SETTING.test(value)) throw badRequest('invalid_setting_name', 'path parameter name must be a setting name such as priority.enabled', name);
    return value;
  }
  return value;
}

/** `/admin/keys/:id` -> `/admin/keys/{id}` (OpenAPI template form). */
export function toOpenApiPath(path: string): string {
  return path.replace(/:([A-Za-z]+)/g, '{$1}');
}
