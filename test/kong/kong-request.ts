// One request as Kong's Lua side holds it while a plugin server runs the keypool phases: answers each PDK call
// the way Kong 3.9's exposed API does (multimap headers, ctx.shared through Lua tables, serializer redaction).
import type { PdkAnswer } from '../helpers/kong-rpc.js';

export interface UpstreamAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  /** kong.response.get_source: "service" when the upstream answered, "exit"/"error" otherwise. */
  readonly source?: 'service' | 'exit' | 'error';
}

export class KongRequest {
  /** Request headers as nginx holds them: service.request.* mutates them, upstream gets what is left. */
  readonly headers = new Map<string, string[]>();
  readonly shared = new Map<string, unknown>();
  readonly serializeValues = new Map<string, unknown>();
  readonly errors: string[] = [];
  /** PDK methods Kong would not find ("could not find pdk method"). */
  readonly unknownMethods: string[] = [];
  upstream: UpstreamAnswer | null = null;

  constructor(
    headers: Readonly<Record<string, string | readonly string[]>>,
    readonly forwardedIp: string | null = '203.0.113.7',
  ) {
    for (const [name, value] of Object.entries(headers)) {
      this.headers.set(name.toLowerCase(), typeof value === 'string' ? [value] : [...value]);
    }
  }

  /** Kong's answer to one PDK call. */
  readonly answer = (method: string, args: readonly unknown[]): PdkAnswer => {
    const [first, second] = args;
    switch (method) {
      case 'kong.request.get_headers':
        return { result: multimap(this.headers) };
      case 'kong.client.get_forwarded_ip':
        return { result: this.forwardedIp ?? undefined };
      case 'kong.service.request.clear_header':
        this.headers.delete(String(first).toLowerCase());
        return { result: undefined };
      case 'kong.service.request.set_header':
        return this.setHeaders({ [String(first)]: second });
      case 'kong.service.request.set_headers':
        return this.setHeaders(first);
      case 'kong.log.set_serialize_value':
        this.serializeValues.set(String(first), luaRoundTrip(second));
        return { result: undefined };
      case 'kong.ctx.shared.set':
        // The value becomes a Lua table in ngx.ctx: what the guard and the log phase read is what Lua kept.
        this.shared.set(String(first), luaRoundTrip(second));
        return { result: undefined };
      case 'kong.ctx.shared.get':
        return { result: this.shared.get(String(first)) };
      case 'kong.response.get_source':
        return { result: this.upstream?.source ?? 'service' };
      case 'kong.response.get_status':
        return { result: this.upstream?.status };
      case 'kong.response.get_headers':
        return { result: multimap(new Map(Object.entries(this.upstream?.headers ?? {}).map(([k, v]) => [k, typeof v === 'string' ? [v] : [...v]]))) };
      case 'kong.log.err':
      case 'kong.log.warn':
        this.errors.push(args.map(String).join(''));
        return { result: undefined };
      default:
        this.unknownMethods.push(method);
        return { result: undefined };
    }
  };

  /** What kong.log.serialize() gives http-log/file-log: headers after the plugins ran, authorization hidden. */
  serialize(): { request: { headers: Record<string, unknown> } } {
    const headers: Record<string, unknown> = {};
    for (const [name, values] of this.headers) headers[name] = values.length === 1 ? values[0] : values;
    if (headers['authorization'] !== undefined) headers['authorization'] = 'REDACTED';
    if (headers['proxy-authorization'] !== undefined) headers['proxy-authorization'] = 'REDACTED';
    const serialized: Record<string, unknown> = { request: { headers } };
    for (const [key, value] of this.serializeValues) setPath(serialized, key.split('.'), value);
    return serialized as { request: { headers: Record<string, unknown> } };
  }

  private setHeaders(raw: unknown): PdkAnswer {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { error: 'headers must be a table' };
    for (const [name, value] of Object.entries(raw)) {
      const values = Array.isArray(value) ? value : [value];
      if (!values.every((v) => typeof v === 'string' && !/[\r\n]/.test(v))) return { error: `invalid header value for "${name}"` };
      this.headers.set(name.toLowerCase(), values as string[]);
    }
    return { result: undefined };
  }
}

/** Kong's fix_mmap: every value an array of strings; an empty table goes out as an empty map. */
function multimap(headers: ReadonlyMap<string, readonly string[]>): Record<string, string[]> {
  return Object.fromEntries([...headers].map(([name, values]) => [name, [...values]]));
}

/**
 * A value's trip into a Lua table and back out through lua-MessagePack: nil fields vanish, an empty table
 * packs as an empty array.
 */
export function luaRoundTrip(value: unknown): unknown {
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(value)) return value.map(luaRoundTrip);
  if (typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    const kept = luaRoundTrip(item);
    if (kept !== undefined) out[key] = kept;
  }
  return Object.keys(out).length === 0 ? [] : out;
}

function setPath(target: Record<string, unknown>, keys: readonly string[], value: unknown): void {
  const [head, ...rest] = keys;
  if (head === undefined) return;
  if (rest.length === 0) {
    target[head] = value;
    return;
  }
  const next = target[head];
  const child = typeof next === 'object' && next !== null ? (next as Record<string, unknown>) : {};
  target[head] = child;
  setPath(child, rest, value);
}
