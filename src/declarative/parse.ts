// keypool.yaml -> DesiredState. Pure: text in, value out (reading the file and resolving secret references is the
// caller's I/O). Every entry goes through the catalog's own validators, so a file accepts exactly what the CLI and
// the admin API accept; problems come back with their YAML path and line (`accounts[2].rpm: must be between ...`).
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { validateNewAccount } from '../catalog/accounts/schema.js';
import { validateNewKey } from '../catalog/keys/schema.js';
import { validateNewTenant } from '../catalog/tenants/schema.js';
import { validatePrice } from '../catalog/prices/schema.js';
import { validateNewMapping } from '../catalog/mappings/schema.js';
import { validateProviderPatch } from '../catalog/providers/schema.js';
import { SETTING_NAMES, validateSetting } from '../catalog/settings/schema.js';
import { isPlainObject, type FieldError, type Validated } from '../catalog/validated.js';
import {
  ACCOUNT_FIELDS,
  ACCOUNT_OWN_FIELDS,
  accountRef,
  FORMAT_VERSION,
  KEY_FIELDS,
  KEY_OWN_FIELDS,
  MAPPING_FIELDS,
  mappingRef,
  PRICE_FIELDS,
  priceRef,
  PROVIDER_FIELDS,
  SECTIONS,
  type DesiredAccount,
  type DesiredKey,
  type DesiredTenant,
  TENANT_FIELDS,
  type DesiredMapping,
  type DesiredPrice,
  type DesiredProvider,
  type DesiredSetting,
  type DesiredState,
  type FieldTable,
  type FileProblem,
  type SecretRef,
} from './model.js';

export type Parsed =
  | {
      readonly ok: true;
      readonly state: DesiredState;
      /** Line of a YAML path (`accounts[2].key`) in the text, for problems found after parsing (secrets, plan). */
      readonly lineOf: (path: string) => number | null;
    }
  | { readonly ok: false; readonly problems: readonly FileProblem[] };

/** Bound on entries per section: a file is configuration, not a bulk import channel. */
export const MAX_ENTRIES_PER_SECTION = 10_000;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export function parseConfigText(text: string): Parsed {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({ path: '', line: lineCounter.linePos(e.pos[0]).line, message: e.message.split('\n')[0]! })),
    };
  }
  const reader = new Reader(doc, lineCounter);
  const root: unknown = doc.toJS({ maxAliasCount: 100 });
  const state = reader.root(root ?? {});
  return reader.problems.length > 0 ? { ok: false, problems: reader.problems } : { ok: true, state, lineOf: (path) => reader.lineOfText(path) };
}

/** `path: message` lines, prefixed with `file:line` when known. */
export function formatProblems(fileName: string, problems: readonly FileProblem[]): string {
  return problems
    .map((p) => `${fileName}${p.line === null ? '' : `:${p.line}`}: ${p.path === '' ? '' : `${p.path}: `}${p.message}`)
    .join('\n');
}

class Reader {
  readonly problems: FileProblem[] = [];

  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  root(input: unknown): DesiredState {
    if (!isPlainObject(input)) {
      this.problem([], 'the file must be a mapping with sections such as accounts:, keys:, mappings:');
      return {};
    }
    for (const key of Object.keys(input)) {
      if (!(SECTIONS as readonly string[]).includes(key)) this.problem([key], `unknown section; known: ${SECTIONS.join(', ')}`);
    }
    if (input.version !== undefined && input.version !== FORMAT_VERSION) this.problem(['version'], `must be ${FORMAT_VERSION}`);
    const state: { -readonly [K in keyof DesiredState]: DesiredState[K] } = {};
    if (input.providers != null) state.providers = this.unique(this.list(input, 'providers', (e, p) => this.provider(e, p)), (x) => x.slug, 'provider');
    if (input.accounts != null) {
      state.accounts = this.unique(this.list(input, 'accounts', (e, p) => this.account(e, p)), (x) => accountRef(x.provider, x.name), 'account');
    }
    if (input.keys != null) state.keys = this.unique(this.list(input, 'keys', (e, p) => this.key(e, p)), (x) => x.name, 'key');
    if (input.mappings != null) {
      state.mappings = this.unique(this.list(input, 'mappings', (e, p) => this.mapping(e, p)), (x) => mappingRef(x.matchType, x.pattern, x.window), 'mapping');
    }
    if (input.tenants != null) state.tenants = this.unique(this.list(input, 'tenants', (e, p) => this.tenant(e, p)), (x) => x.id, 'tenant');
    if (input.prices != null) state.prices = this.unique(this.list(input, 'prices', (e, p) => this.price(e, p)), (x) => priceRef(x.providerSlug, x.model), 'price');
    if (input.settings != null) state.settings = this.settings(input.settings);
    return state;
  }

  private list<T>(input: Record<string, unknown>, section: string, read: (entry: unknown, path: (string | number)[]) => T | null): T[] {
    const items = input[section];
    if (!Array.isArray(items)) {
      this.problem([section], 'must be a list (entries start with "- ")');
      return [];
    }
    if (items.length > MAX_ENTRIES_PER_SECTION) {
      this.problem([section], `at most ${MAX_ENTRIES_PER_SECTION} entries (got ${items.length})`);
      return [];
    }
    const out: T[] = [];
    items.forEach((entry, index) => {
      const value = read(entry, [section, index]);
      if (value !== null) out.push(value);
    });
    return out;
  }

  /** Entities are matched by name: the same name twice in one file is ambiguous. */
  private unique<T extends { readonly at: string }>(items: T[], identity: (item: T) => string, entity: string): T[] {
    const seen = new Map<string, string>();
    for (const item of items) {
      const id = identity(item);
      const first = seen.get(id);
      if (first !== undefined) this.problems.push({ path: item.at, line: this.lineOfText(item.at), message: `${entity} ${id} is already declared at ${first}` });
      else seen.set(id, item.at);
    }
    return items;
  }

  private provider(entry: unknown, path: (string | number)[]): DesiredProvider | null {
    const fields = this.fields(entry, path, PROVIDER_FIELDS, []);
    if (!fields) return null;
    const slug = typeof fields.catalog.slug === 'string' ? fields.catalog.slug : null;
    if (slug === null) this.problem([...path, 'slug'], 'slug is required');
    if (fields.catalog.strategy === undefined) this.problem([...path, 'strategy'], 'strategy is required');
    const patch = this.checked(
      validateProviderPatch({ strategy: fields.catalog.strategy, perModelState: fields.catalog.perModelState ?? false }),
      path,
      PROVIDER_FIELDS,
    );
    if (slug === null || !patch?.strategy) return null;
    return { at: pathText(path), slug, strategy: patch.strategy, perModelState: patch.perModelState ?? false };
  }

  private account(entry: unknown, path: (string | number)[]): DesiredAccount | null {
    const fields = this.fields(entry, path, ACCOUNT_FIELDS, ACCOUNT_OWN_FIELDS);
    if (!fields) return null;
    // The catalog checks a secret's shape; the file holds only a reference, so a placeholder stands in here.
    const value = this.checked(validateNewAccount({ ...fields.catalog, apiKey: 'placeholder' }), path, ACCOUNT_FIELDS);
    const key = fields.own.key === undefined || fields.own.key === null ? null : this.secretRef(fields.own.key, [...path, 'key']);
    const status = this.choice(fields.own.status, [...path, 'status'], ['active', 'disabled'] as const, 'active');
    if (!value || key === undefined || status === undefined) return null;
    const { apiKey: _placeholder, providerSlug, ...rest } = value;
    return { at: pathText(path), provider: providerSlug, key, status, ...rest };
  }

  private key(entry: unknown, path: (string | number)[]): DesiredKey | null {
    const fields = this.fields(entry, path, KEY_FIELDS, KEY_OWN_FIELDS);
    if (!fields) return null;
    // expires_at is checked for shape here; whether it lies in the future matters only for what apply would write
    // (a dumped key that has expired must round-trip), so the plan checks that.
    const value = this.checked(validateNewKey(fields.catalog, 0), path, KEY_FIELDS);
    const importKey = fields.own.import === undefined || fields.own.import === null ? null : this.secretRef(fields.own.import, [...path, 'import']);
    const status = this.choice(fields.own.status, [...path, 'status'], ['active', 'revoked'] as const, 'active');
    if (!value || importKey === undefined || status === undefined) return null;
    return {
      at: pathText(path),
      ...value,
      rpmLimit: value.rpmLimit ?? null,
      rpdLimit: value.rpdLimit ?? null,
      tpmLimit: value.tpmLimit ?? null,
      tpdLimit: value.tpdLimit ?? null,
      status,
      importKey,
    };
  }

  private mapping(entry: unknown, path: (string | number)[]): DesiredMapping | null {
    const fields = this.fields(entry, path, MAPPING_FIELDS, []);
    if (!fields) return null;
    const value = this.checked(validateNewMapping(fields.catalog), path, MAPPING_FIELDS);
    return value ? { at: pathText(path), ...value } : null;
  }

  private tenant(entry: unknown, path: (string | number)[]): DesiredTenant | null {
    const fields = this.fields(entry, path, TENANT_FIELDS, []);
    if (!fields) return null;
    const value = this.checked(validateNewTenant(fields.catalog), path, TENANT_FIELDS);
    return value ? { at: pathText(path), ...value } : null;
  }

  private price(entry: unknown, path: (string | number)[]): DesiredPrice | null {
    const fields = this.fields(entry, path, PRICE_FIELDS, []);
    if (!fields) return null;
    const value = this.checked(validatePrice(fields.catalog), path, PRICE_FIELDS);
    return value ? { at: pathText(path), ...value } : null;
  }

  private settings(input: unknown): DesiredSetting[] {
    if (!isPlainObject(input)) {
      this.problem(['settings'], 'must be a mapping of name: value (priority.enabled: true)');
      return [];
    }
    const out: DesiredSetting[] = [];
    for (const [name, value] of Object.entries(input)) {
      const checked = validateSetting(name, value);
      if (checked.ok) out.push({ ...checked.value, at: pathText(['settings', name]) });
      else for (const e of checked.errors) this.problem(['settings', name], stripSettingName(stripField(e)));
    }
    return out;
  }

  /** Splits an entry into catalog input (renamed to camelCase) and the file's own fields; unknown fields are problems. */
  private fields(
    entry: unknown,
    path: (string | number)[],
    table: FieldTable,
    own: readonly string[],
  ): { catalog: Record<string, unknown>; own: Record<string, unknown> } | null {
    if (!isPlainObject(entry)) {
      this.problem(path, 'must be a mapping of field: value');
      return null;
    }
    const catalog: Record<string, unknown> = {};
    const ownValues: Record<string, unknown> = {};
    let unknown = false;
    for (const [field, value] of Object.entries(entry)) {
      const mapped = table[field];
      if (mapped !== undefined) {
        // An explicit null reads as "not set", the same as leaving the field out.
        if (value !== null) catalog[mapped] = value;
      } else if (own.includes(field)) ownValues[field] = value;
      else {
        unknown = true;
        this.problem([...path, field], `unknown field; known: ${[...Object.keys(table), ...own].join(', ')}`);
      }
    }
    return unknown ? null : { catalog, own: ownValues };
  }

  /** A catalog result, its errors moved to the file's field names and paths. */
  private checked<T>(result: Validated<T>, path: (string | number)[], table: FieldTable): T | null {
    if (result.ok) return result.value;
    const fileField = new Map(Object.entries(table).map(([file, catalog]) => [catalog, file]));
    for (const error of result.errors) {
      // `window.days` -> the file's window field, then its part.
      const [head, ...rest] = error.field.split('.');
      const field = fileField.get(error.field) ?? (rest.length > 0 && fileField.has(head!) ? [fileField.get(head!)!, ...rest].join('.') : undefined);
      this.problem(field === undefined ? path : [...path, ...field.split('.')], stripField(error));
    }
    return null;
  }

  /** `{env: VAR}` or `{file: /path}`; undefined (with a problem) otherwise. Inline secrets are refused. */
  private secretRef(value: unknown, path: (string | number)[]): SecretRef | undefined {
    if (typeof value === 'string') {
      this.problem(path, 'secrets are never written in the file: use {env: VARIABLE} or {file: /path/to/secret}');
      return undefined;
    }
    if (isPlainObject(value) && Object.keys(value).length === 1) {
      if (typeof value.env === 'string' && ENV_NAME.test(value.env)) return { env: value.env };
      if (typeof value.file === 'string' && value.file.length > 0 && value.file.length <= 4096) return { file: value.file };
    }
    this.problem(path, 'must be {env: VARIABLE} or {file: /path/to/secret}');
    return undefined;
  }

  private choice<T extends string>(value: unknown, path: (string | number)[], choices: readonly T[], fallback: T): T | undefined {
    if (value === undefined || value === null) return fallback;
    if (typeof value === 'string' && (choices as readonly string[]).includes(value)) return value as T;
    this.problem(path, `must be one of ${choices.join(', ')}`);
    return undefined;
  }

  private problem(path: (string | number)[], message: string): void {
    this.problems.push({ path: pathText(path), line: this.line(path), message });
  }

  private line(path: (string | number)[]): number | null {
    for (let end = path.length; end >= 0; end--) {
      const node = end === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, end), true);
      if (isNode(node) && node.range) return this.lines.linePos(node.range[0]).line;
    }
    return null;
  }

  lineOfText(path: string): number | null {
    const parts = [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
    return this.line(parts);
  }
}

/** `['accounts', 2, 'rpm']` -> `accounts[2].rpm` */
export function pathText(path: readonly (string | number)[]): string {
  return path.reduce<string>((text, part) => (typeof part === 'number' ? `${text}[${part}]` : text === '' ? part : `${text}.${part}`), '');
}

/** A setting's message names the setting (`priority.enabled: ...`); the path already does. */
function stripSettingName(message: string): string {
  const named = SETTING_NAMES.find((n) => message.startsWith(`${n}: `));
  return named === undefined ? message : message.slice(named.length + 2);
}

/** The catalog prefixes messages with its field name (`rpmLimit: must be ...`); the path says it in file terms. */
function stripField(error: FieldError): string {
  for (const prefix of [`${error.field}: `, `${error.field} `]) {
    if (error.message.startsWith(prefix)) return error.message.slice(prefix.length);
  }
  return error.message;
}
