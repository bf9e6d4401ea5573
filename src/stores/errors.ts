// Typed failures of the catalog (SQL). Expected outcomes of operator writes (a duplicate name, an unknown id)
// are these classes, so the CLI and the admin API map them to exit codes / HTTP statuses without parsing messages.
// Messages name the entity and the offending field, never a secret.

/** Base class: something the store refused. */
export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A unique-among-active-rows rule was violated (HTTP 409, CLI exit 2). */
export class ConflictError extends StoreError {
  constructor(
    /** Table-level entity: 'account', 'key', 'mapping', 'provider', 'setting'. */
    readonly entity: string,
    /** The input field that collides (camelCase), e.g. 'name', 'pattern'. */
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** No active row with that id / name (HTTP 404, CLI exit 2). */
export class NotFoundError extends StoreError {
  constructor(
    readonly entity: string,
    /** The reference the caller gave (an id or a name); never a secret. */
    readonly ref: string,
  ) {
    super(`${entity} not found: ${ref}`);
  }
}

/** Input the store itself refuses (an invariant the schema or the compiled snapshot relies on); HTTP 422, exit 2. */
export class InvalidInputError extends StoreError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** The database rejected a write because the transition is not allowed (e.g. rotating a revoked key); HTTP 409. */
export class StateError extends StoreError {
  constructor(
    readonly entity: string,
    message: string,
  ) {
    super(message);
  }
}

/** PostgreSQL SQLSTATE of a driver error, when it has one (both postgres.js and PGlite expose `code`). */
export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** Name of the constraint or index a driver error reports, when it has one. */
export function violatedConstraint(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null) {
    const record = error as { constraint?: unknown; constraint_name?: unknown };
    const name = record.constraint ?? record.constraint_name;
    if (typeof name === 'string') return name;
  }
  return undefined;
}
