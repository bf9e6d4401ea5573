// Reading a request's JSON body and query string into the shapes the catalog schemas (src/catalog/*/schema.ts) take.
// Query-string problems are 400 (the URL is malformed); body problems are 422 via ValidationFailure.
import { badRequest } from './http-errors.js';
import type { RequestContext } from './router.js';
import { validateReason } from '../catalog/accounts/schema.js';
import { type Validated, camelCaseKeys, parseIsoInstantMs, unwrap } from '../catalog/validated.js';
import { isUuid } from '../catalog/rules.js';

/** The body with snake_case top-level keys renamed to the validators' camelCase (`allowed_ips` -> `allowedIps`). */
export function bodyInput(ctx: RequestContext): unknown {
  return camelCaseKeys(ctx.body);
}

/** The body as an object for routes whose body is optional (`{}` when absent). */
export function optionalBodyInput(ctx: RequestContext): unknown {
  return ctx.body === undefined ? {} : camelCaseKeys(ctx.body);
}

/** A validated value, or a 422 naming every field problem (fields in snake_case). */
export function valid<T>(result: Validated<T>): T {
  return unwrap(result);
}

/** `{"reason": "..."}` (optional) for disable / revoke. */
export function reasonInput(ctx: RequestContext): string | null {
  const body = optionalBodyInput(ctx);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return valid({ ok: false, errors: [{ field: 'body', code: 'invalid_type', message: 'the body must be a JSON object' }] });
  }
  const unknown = Object.keys(body).find((key) => key !== 'reason');
  if (unknown !== undefined) return valid({ ok: false, errors: [{ field: unknown, code: 'unknown_field', message: `unknown field; known: reason` }] });
  return valid(validateReason((body as { reason?: unknown }).reason));
}

/** Refuses query parameters the route does not know (a typo would otherwise silently widen a listing). */
export function onlyQuery(ctx: RequestContext, known: readonly string[]): void {
  for (const name of ctx.query.keys()) {
    if (!known.includes(name)) throw badRequest('unknown_parameter', `unknown query parameter; known: ${known.join(', ') || 'none'}`, name);
  }
}

function single(ctx: RequestContext, name: string): string | undefined {
  const values = ctx.query.getAll(name);
  if (values.length > 1) throw badRequest('invalid_parameter', `${name} may be given once`, name);
  return values[0];
}

export function queryString(ctx: RequestContext, name: string, maxChars = 512): string | undefined {
  const value = single(ctx, name);
  if (value === undefined) return undefined;
  if (value.length === 0 || value.length > maxChars) throw badRequest('invalid_parameter', `${name} must be 1-${maxChars} characters`, name);
  return value;
}

export function queryInstant(ctx: RequestContext, name: string): Date | undefined {
  const value = single(ctx, name);
  if (value === undefined) return undefined;
  const ms = parseIsoInstantMs(value);
  if (ms === null) throw badRequest('invalid_parameter', `${name} must be an ISO 8601 date or date-time (2026-01-31T12:00:00Z)`, name);
  return new Date(ms);
}

export function queryInt(ctx: RequestContext, name: string, min: number, max: number): number | undefined {
  const value = single(ctx, name);
  if (value === undefined) return undefined;
  const n = /^\d{1,9}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) throw badRequest('invalid_parameter', `${name} must be a whole number from ${min} to ${max}`, name);
  return n;
}

export function queryBool(ctx: RequestContext, name: string): boolean | undefined {
  const value = single(ctx, name);
  if (value === undefined) return undefined;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw badRequest('invalid_parameter', `${name} must be true or false`, name);
}

export function queryChoice<T extends string>(ctx: RequestContext, name: string, choices: readonly T[]): T | undefined {
  const value = single(ctx, name);
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value)) throw badRequest('invalid_parameter', `${name} must be one of ${choices.join(', ')}`, name);
  return value as T;
}


export function queryUuid(ctx: RequestContext, name: string): string | undefined {
  const value = single(ctx, name);
  if (value === undefined) return undefined;
  if (!isUuid(value)) throw badRequest('invalid_parameter', `${name} must be a UUID`, name);
  return value.toLowerCase();
}
