// `POST /admin/providers/:slug/accounts/:id/check-health`: the one place keypool itself calls a provider.
// A cheap authenticated GET (the model list, or the key-info endpoint) with a deadline; the caller folds the answer
// into the account's health exactly as if a proxied request had seen it.
// The probe carries the account's upstream key, which nobody may read back (not even an admin): so it only ever goes
// to the provider's configured base URL (KEYPOOL_HEALTHCHECK_BASE_URLS or the built-in default), over https, or
// plain http to a loopback address configured explicitly (local test servers). Nothing per account (no tag, no
// request field) can point it elsewhere, and redirects are never followed.
import type { AuthStyle, HeaderBag } from '../core/types.js';
import { isProviderSlug } from '../catalog/rules.js';

export interface HealthCheckOptions {
  /**
   * Base URL per provider slug, overriding the built-in defaults (a regional endpoint, an Azure resource, a local
   * mock in tests). Each must pass checkedBaseUrl (https, or http to loopback); the constructor throws otherwise.
   */
  readonly baseUrls?: Readonly<Record<string, string>>;
  /** Deadline for the whole probe. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** Injected for tests; defaults to the global fetch. */
  readonly fetch?: typeof fetch;
}

export interface ProbeTarget {
  readonly providerSlug: string;
  readonly authStyle: AuthStyle;
  /** Decrypted upstream key: used for this one request, never logged or returned. */
  readonly secret: string;
}

export type ProbeResult =
  | {
      readonly kind: 'answered';
      /** Upstream status; a Gemini 400 `API_KEY_INVALID` is reported as 401 (the credential is bad). */
      readonly status: number;
      readonly upstreamStatus: number;
      readonly headers: HeaderBag;
      readonly latencyMs: number;
      /** Probed URL (never carries the key: it travels in a header). */
      readonly url: string;
    }
  | { readonly kind: 'timeout' | 'network_error'; readonly latencyMs: number; readonly url: string; readonly message: string };

export class HealthCheckUnavailable extends Error {
  constructor(readonly providerSlug: string) {
    super(
      `no health-check URL for provider ${providerSlug}: configure one in KEYPOOL_HEALTHCHECK_BASE_URLS ` +
        `(${providerSlug}=https://…)`,
    );
    this.name = 'HealthCheckUnavailable';
  }
}

/** Public endpoints of the providers keypool knows; azure-openai and openai-compatible have no fixed host. */
export const DEFAULT_BASE_URLS: Readonly<Record<string, string>> = {
  openai: 'https://api.openai.com',
  anthropic: 'https://api.anthropic.com',
  gemini: 'https://generativelanguage.googleapis.com',
  openrouter: 'https://openrouter.ai',
};

/** Path probed per provider: cheap, authenticated, no tokens spent. */
const PROBE_PATHS: Readonly<Record<string, string>> = {
  openai: '/v1/models',
  anthropic: '/v1/models?limit=1',
  gemini: '/v1beta/models?pageSize=1',
  // OpenRouter's model list is public; the key endpoint needs (and checks) the key.
  openrouter: '/api/v1/key',
  'azure-openai': '/openai/models?api-version=2024-10-21',
  'openai-compatible': '/v1/models',
};
const DEFAULT_PROBE_PATH = '/v1/models';
/** Only the start of a body is read (to spot Gemini's API_KEY_INVALID); a model list can be large. */
const BODY_PEEK_BYTES = 16 * 1024;

/** Deadline of one probe unless KEYPOOL_HEALTHCHECK_TIMEOUT_MS says otherwise. */
export const DEFAULT_HEALTHCHECK_TIMEOUT_MS = 5_000;

export class HealthChecker {
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;

  private readonly baseUrls: ReadonlyMap<string, string>;

  constructor(options: HealthCheckOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_HEALTHCHECK_TIMEOUT_MS;
    this.fetchFn = options.fetch ?? fetch;
    const baseUrls = new Map(Object.entries(DEFAULT_BASE_URLS));
    for (const [slug, url] of Object.entries(options.baseUrls ?? {})) {
      const checked = checkedBaseUrl(url);
      if (checked === null) throw new Error(`health-check base URL for ${slug}: ${BASE_URL_RULE}`);
      baseUrls.set(slug, checked);
    }
    this.baseUrls = baseUrls;
  }

  /** The URL that would be probed; throws HealthCheckUnavailable when the provider has no configured host. */
  urlFor(target: Omit<ProbeTarget, 'secret'>): string {
    const base = this.baseUrls.get(target.providerSlug);
    if (base === undefined) throw new HealthCheckUnavailable(target.providerSlug);
    return base + (PROBE_PATHS[target.providerSlug] ?? DEFAULT_PROBE_PATH);
  }

  async probe(target: ProbeTarget): Promise<ProbeResult> {
    const url = this.urlFor(target);
    const startedAt = performance.now();
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const response = await this.fetchFn(url, {
        method: 'GET',
        headers: authHeaders(target),
        // A redirect could carry the key's header to another host: never follow one.
        redirect: 'manual',
        signal,
      });
      const body = await peekBody(response);
      const headers = Object.create(null) as Record<string, string>; // a header bag inherits nothing
      response.headers.forEach((value, name) => {
        headers[name.toLowerCase()] = value;
      });
      const status = response.status === 400 && /API_KEY_INVALID/.test(body) ? 401 : response.status;
      return { kind: 'answered', status, upstreamStatus: response.status, headers, latencyMs: performance.now() - startedAt, url };
    } catch (error) {
      const latencyMs = performance.now() - startedAt;
      if (signal.aborted) return { kind: 'timeout', latencyMs, url, message: `no answer within ${this.timeoutMs} ms` };
      return { kind: 'network_error', latencyMs, url, message: describeNetworkError(error) };
    }
  }
}

function authHeaders(target: ProbeTarget): Record<string, string> {
  const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'keypool-health-check' };
  if (target.authStyle === 'bearer') headers.authorization = `Bearer ${target.secret}`;
  else headers[target.authStyle] = target.secret;
  if (target.providerSlug === 'anthropic') headers['anthropic-version'] = '2023-06-01';
  return headers;
}

async function peekBody(response: Response): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < BODY_PEEK_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, BODY_PEEK_BYTES).toString('utf8');
}

/** The error's code or class, never its message alone (undici messages may quote request details). */
function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  return code ?? (error instanceof Error ? error.name : 'network error');
}

const BASE_URL_RULE = 'expected https://host[:port][/path], or http:// only to a loopback address (127.0.0.1, [::1], localhost)';

/**
 * The base URL without trailing slashes when the probe may send a key there: https anywhere, plain http only to
 * loopback (a local test server); no credentials, query or fragment in it. Null otherwise.
 */
export function checkedBaseUrl(raw: string): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return null;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) return null;
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

/**
 * Parses `openai=https://api.openai.com,azure-openai=https://myres.openai.azure.com` (an environment value) into
 * per-provider base URLs. Throws a plain Error naming the bad entry.
 */
export function parseBaseUrls(spec: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const slug = part.slice(0, eq).trim();
    const url = checkedBaseUrl(part.slice(eq + 1).trim());
    if (eq <= 0 || !isProviderSlug(slug)) {
      throw new Error(`expected provider=https://host entries separated by commas, got "${part}"`);
    }
    if (url === null) throw new Error(`${slug}: ${BASE_URL_RULE}`);
    out[slug] = url;
  }
  return out;
}
