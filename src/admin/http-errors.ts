// Every error the admin API answers, as one value type rendered in exactly one place (server.ts).
// Body shape: {"error":{"code","message","field"}} (+ "details" when validation found several problems).
import { ConflictError, InvalidInputError, NotFoundError, StateError } from '../stores/errors.js';
import { type FieldError, ValidationFailure, snakeCase } from '../catalog/validated.js';

export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    /** snake_case body field, query parameter or path parameter the error is about; null for the request as a whole. */
    readonly field: string | null;
    readonly details?: readonly FieldError[];
  };
}

/** An expected failure of an admin request; thrown by handlers, answered by the server. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
    /** Extra response headers (e.g. allow on 405, retry-after). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, field: this.field } };
  }
}

export const badRequest = (code: string, message: string, field: string | null = null): HttpError =>
  new HttpError(400, code, message, field);

export const notFound = (what: string, id: string, field: string | null = 'id'): HttpError =>
  new HttpError(404, 'not_found', `${what} ${id} does not exist (or was deleted)`, field);

export const unprocessable = (code: string, message: string, field: string | null = null): HttpError =>
  new HttpError(422, code, message, field);

export const PRIORITY_DISABLED_MESSAGE =
  'priority mapping is disabled: enable it with `keypool config set priority.enabled true` ' +
  'or `PUT /admin/settings/priority.enabled` with {"value": true}';

/**
 * Status and body for anything a handler threw: HttpError, ValidationFailure and the store's typed refusals are
 * expected; anything else is a bug or broken infrastructure (500, logged with the request id, never detailed).
 */
export function errorResponse(error: unknown): { status: number; body: ErrorBody; headers: Record<string, string>; expected: boolean } {
  if (error instanceof HttpError) {
    return { status: error.status, body: error.toBody(), headers: { ...error.headers }, expected: true };
  }
  if (error instanceof ValidationFailure) return { status: 422, body: validationBody(error), headers: {}, expected: true };
  const refused = asStoreError(error);
  if (refused) return { ...refused, headers: {}, expected: true };
  return {
    status: 500,
    body: { error: { code: 'internal_error', message: 'internal error; see the server log for this request id', field: null } },
    headers: {},
    expected: false,
  };
}

/** Bad operator input: the first problem as the error, every problem in `details`, fields named snake_case as sent. */
function validationBody(failure: ValidationFailure): ErrorBody {
  const details = failure.errors.map((e) => ({ ...e, field: snakeCase(e.field) }));
  const first = details[0]!;
  return { error: { code: first.code, message: first.message, field: first.field, details } };
}

/** The repository's typed refusals (src/stores/errors.ts); their messages are written for operators, never hold secrets. */
function asStoreError(error: unknown): { status: number; body: ErrorBody } | null {
  const body = (code: string, message: string, field: string | null): ErrorBody => ({ error: { code, message, field } });
  if (error instanceof NotFoundError) return { status: 404, body: body('not_found', error.message, null) };
  if (error instanceof ConflictError) return { status: 409, body: body('conflict', error.message, snakeCase(error.field)) };
  if (error instanceof StateError) return { status: 409, body: body('invalid_state', error.message, null) };
  if (error instanceof InvalidInputError) return { status: 422, body: body('invalid_input', error.message, snakeCase(error.field)) };
  return null;
}
