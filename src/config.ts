// Service configuration: every entry parsed and validated once at start, from one table (CONFIG_TABLE: variable, default,
// parser). Precedence: explicit overrides > environment > defaults; overrides go through the environment's parsers.
import { DEFAULT_KEY_HEADERS } from './core/apikey.js';
import { DEFAULT_HEALTHCHECK_TIMEOUT_MS, parseBaseUrls } from './admin/health-check.js';
import { DEFAULT_RELOAD_INTERVAL_MS } from './snapshot/holder.js';
import { DEFAULT_COOLDOWN_MS } from './core/response.js';
import { DEFAULT_STATE_TIMEOUT_MS, type StateFailureMode } from './stores/resilient-state.js';
import { parseRedisUrl, RedisUrlError } from './stores/redis-url.js';
import type { TracingConfig } from './telemetry/tracing.js';

export type { StateFailureMode };

/** Embedded store directory when KEYPOOL_DATA_DIR is unset. */
const DEFAULT_DATA_DIR = './.keypool';


export interface KeypoolConfig {
  /** postgres://... for PostgreSQL, memory:// for a throwaway embedded store; unset = embedded PGlite in dataDir. */
  readonly databaseUrl: string | undefined;
  /**
   * KEYPOOL_ENCRYPTION_KEYS: the versioned AES-256-GCM key ring for upstream keys (`v2:<base64>,v1:…`). Secret: never
   * logged (src/log.ts redacts the field); parsed and checked by src/secrets/keyring.ts. Unset on the embedded store =
   * generated into the data directory.
   */
  readonly encryptionKeys: string | undefined;
  /** KEYPOOL_KEY_PEPPER: HMAC pepper of client key digests (secret, like encryptionKeys). */
  readonly keyPepper: string | undefined;
  /** Embedded data (PGlite files, generated secrets, the socket-share file). */
  readonly dataDir: string;
  /**
   * Whether KEYPOOL_DATA_DIR (or a dataDir override) named dataDir, rather than the ./.keypool default. The Kong
   * plugin refuses to start on an unconfigured store (see RuntimeOptions.requireConfiguredStore).
   */
  readonly dataDirConfigured: boolean;
  /**
   * Where the Envoy ext_proc gRPC server listens (host:port). Loopback by default (sidecar): anyone who can call
   * `Process` with a valid client key receives a pooled upstream key, so a non-loopback listener must be TLS with
   * client authentication (src/adapters/envoy/channel-security.ts refuses to start otherwise).
   */
  readonly grpcListen: string;
  /** PEM certificate chain the ext_proc server presents (KEYPOOL_GRPC_TLS_CERT); with grpcTlsKeyFile turns TLS on. */
  readonly grpcTlsCertFile: string | undefined;
  /** PEM private key of grpcTlsCertFile (KEYPOOL_GRPC_TLS_KEY). */
  readonly grpcTlsKeyFile: string | undefined;
  /** PEM CA bundle (KEYPOOL_GRPC_TLS_CLIENT_CA): mTLS, only client certificates it signed may connect. Needs TLS. */
  readonly grpcTlsClientCaFile: string | undefined;
  /**
   * Shared secret Envoy sends as `authorization: Bearer <token>` in the ext_proc grpc_service initial_metadata
   * (KEYPOOL_GRPC_TOKEN). Every gRPC call (Process and Health) without it is refused UNAUTHENTICATED.
   */
  readonly grpcToken: string | undefined;
  /** Admin HTTP API (loopback by default; never 0.0.0.0 unless asked). */
  readonly adminListen: string;
  /** Bearer token for the admin API; required when adminListen is not loopback. */
  readonly adminToken: string | undefined;
  /**
   * Host names the admin API answers to besides IP literals and `localhost` (KEYPOOL_ADMIN_ALLOWED_HOSTS, comma
   * separated): any other Host header is refused, so a web page cannot reach the API by rebinding its DNS name.
   */
  readonly adminAllowedHosts: readonly string[];
  /** Name recorded as the actor of admin writes made with adminToken. */
  readonly adminTokenName: string;
  /** Who may scrape /metrics: auto (open on a loopback admin address, token elsewhere), public, or token. */
  readonly metricsAccess: 'auto' | 'public' | 'token';
  /**
   * Provider base URLs for `check-health` probes, parsed from `openai=https://…,azure-openai=https://…`
   * (KEYPOOL_HEALTHCHECK_BASE_URLS); unset = built-in defaults.
   */
  readonly healthCheckBaseUrls: Readonly<Record<string, string>> | undefined;
  /** Deadline of one `check-health` probe. */
  readonly healthCheckTimeoutMs: number;
  /** Revoke keys that are past rotate_after_days in the periodic lifecycle sweep. */
  readonly autoRevokeOverdue: boolean;
  /**
   * Re-probe accounts disabled as quota_exhausted (OpenAI insufficient_quota) this long after they were disabled: the
   * lifecycle sweep (every minute) enables them again, audited, and the next request tells whether credit is back
   * (if not, the provider's answer disables the account again). 0 = never: they wait for an operator.
   */
  readonly quotaReprobeMs: number;
  /**
   * Redis for state shared by every replica; unset = in-memory state per replica. redis:// or rediss:// (TLS) for one
   * server, redis+cluster:// or rediss+cluster:// with comma-separated seed nodes for Redis Cluster; an ACL user and
   * password go in the URL (src/stores/redis-url.ts). Validated here; never logged (it may carry a password).
   */
  readonly redisUrl: string | undefined;
  /**
   * Prepended to every Redis key (before the `{kp:<pool>}` hash tag), so several keypool deployments (or test runs)
   * can share one Redis without sharing state. Every replica of one deployment must use the same prefix. Default ''.
   */
  readonly redisKeyPrefix: string;
  /** What to do when Redis fails: continue on per-replica state (local) or refuse (closed, 503 state_unavailable). */
  readonly stateFailureMode: StateFailureMode;
  /** Replicas sharing the pool; in local fallback each replica enforces limit / expectedReplicas. */
  readonly expectedReplicas: number;
  /**
   * Upper bound on one Redis admission before the breaker counts a failure. A loopback round trip takes well under
   * a millisecond, but on a busy node event-loop lag alone can reach tens of ms: a bound too tight trips the breaker
   * with Redis healthy and mixes local and shared decisions (measured: 50 ms overshot limits under CPU load).
   */
  readonly stateTimeoutMs: number;
  /** Client headers that may carry the system API key, in lookup order. */
  readonly keyHeaders: readonly string[];
  /**
   * How long an in-flight slot survives without a release or a renewal. A live request's slot is renewed every
   * leaseMs / 3 while it runs (however long it streams), so this is how soon a crashed replica's slots come back.
   */
  readonly leaseMs: number;
  /** KEYPOOL_QUOTA_TZ: IANA time zone whose calendar days the per-day request quotas count (default UTC). */
  readonly quotaTimeZone: string;
  /** Safety-net full reload of the config snapshot (the change feed normally reloads within ~100 ms); 0 = off. */
  readonly reloadIntervalMs: number;
  /** How often buffered audit rows, usage stats and key touches are flushed to the database. */
  readonly flushIntervalMs: number;
  /** Bound on buffered durable writes while the database is unreachable; beyond it writes are dropped and counted. */
  readonly writeBufferMax: number;
  /** Cooldown applied to an account after a 429 without any retry hint. */
  readonly defaultCooldownMs: number;
  /**
   * Audit rows and usage buckets older than this many days are pruned hourly (through the audited prune path, see
   * sql/migrations/0004_retention.sql); 0 keeps everything (prune by hand with `keypool audit prune --before 90d`).
   */
  readonly retentionDays: number;
  /** Apply migrations at start (takes an advisory lock on PostgreSQL, so replicas may start together). */
  readonly migrateOnStart: boolean;
  /** Embedded store only: insert demo accounts and mappings on the first start. */
  readonly demoSeed: boolean;
  /** Longest a graceful shutdown waits for open streams. */
  readonly drainTimeoutMs: number;
  readonly logLevel: string;
  /**
   * OpenTelemetry traces (src/telemetry/), from the standard OTEL_* variables; null = off, and then no SDK module is
   * loaded. On when OTEL_TRACES_EXPORTER=otlp, or when it is unset and OTEL_EXPORTER_OTLP_ENDPOINT or
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turn them off.
   * The exporter reads the endpoint, headers, timeout and OTEL_BSP_* batching variables itself.
   */
  readonly tracing: TracingConfig | null;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * How one configuration entry is read. Both sources go through the same parser: an environment value as it is, an explicit
 * override (what `startKeypool`/`openRuntime` callers and tests pass) first written as the text an operator would
 * put in the environment (numbers and booleans as digits/words, lists comma-separated, maps `name=value,…`). Absent
 * or blank means the default, which each table row below states exactly once.
 */
interface ConfigEntry<T> {
  fromEnv(env: Env): T;
  fromOverride(value: T): T;
}

/** An entry read from one variable by `parse(text, variable)` (text undefined = absent or blank = the default). */
function entry<T>(variable: string, parse: (text: string | undefined, variable: string) => T): ConfigEntry<T> {
  return {
    fromEnv: (env) => parse(nonEmpty(env[variable]), variable),
    fromOverride: (value) => parse(nonEmpty(asText(value)), variable),
  };
}

/** An override value as environment text, so it meets the environment's parser. */
function asText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return value.map(String).join(',');
  if (typeof value === 'object') return Object.entries(value).map(([name, item]) => `${name}=${String(item)}`).join(',');
  return String(value);
}

type ConfigTable = { readonly [K in keyof KeypoolConfig]: ConfigEntry<KeypoolConfig[K]> };

/** Every configuration entry: its variable, its default and its parser, in one place. */
const CONFIG_TABLE: ConfigTable = {
  databaseUrl: text('DATABASE_URL'),
  encryptionKeys: text('KEYPOOL_ENCRYPTION_KEYS'),
  keyPepper: text('KEYPOOL_KEY_PEPPER'),
  dataDir: text('KEYPOOL_DATA_DIR', DEFAULT_DATA_DIR),
  dataDirConfigured: dataDirConfigured(),
  grpcListen: listenAddress('KEYPOOL_GRPC_LISTEN', '127.0.0.1:50051'),
  grpcTlsCertFile: text('KEYPOOL_GRPC_TLS_CERT'),
  grpcTlsKeyFile: text('KEYPOOL_GRPC_TLS_KEY'),
  grpcTlsClientCaFile: text('KEYPOOL_GRPC_TLS_CLIENT_CA'),
  grpcToken: secretToken('KEYPOOL_GRPC_TOKEN'),
  adminListen: listenAddress('KEYPOOL_ADMIN_LISTEN', '127.0.0.1:9901'),
  adminToken: text('KEYPOOL_ADMIN_TOKEN'),
  adminAllowedHosts: hostNameList('KEYPOOL_ADMIN_ALLOWED_HOSTS'),
  adminTokenName: text('KEYPOOL_ADMIN_TOKEN_NAME', 'admin'),
  metricsAccess: oneOf('KEYPOOL_METRICS_ACCESS', ['auto', 'public', 'token'] as const, 'auto'),
  healthCheckBaseUrls: baseUrls('KEYPOOL_HEALTHCHECK_BASE_URLS'),
  healthCheckTimeoutMs: integer('KEYPOOL_HEALTHCHECK_TIMEOUT_MS', DEFAULT_HEALTHCHECK_TIMEOUT_MS, 100, 60_000),
  autoRevokeOverdue: boolean('KEYPOOL_AUTO_REVOKE_OVERDUE', false),
  quotaReprobeMs: integer('KEYPOOL_QUOTA_REPROBE_MS', 0, 60_000, 30 * 86_400_000, { zeroMeansOff: true }),
  redisUrl: redisUrl('REDIS_URL'),
  redisKeyPrefix: text('KEYPOOL_REDIS_KEY_PREFIX', ''),
  stateFailureMode: oneOf('KEYPOOL_STATE_FAILURE_MODE', ['local', 'closed'] as const, 'local'),
  expectedReplicas: integer('KEYPOOL_EXPECTED_REPLICAS', 1, 1, 1000),
  stateTimeoutMs: integer('KEYPOOL_STATE_TIMEOUT_MS', DEFAULT_STATE_TIMEOUT_MS, 1, 10_000),
  keyHeaders: headerList('KEYPOOL_KEY_HEADERS', DEFAULT_KEY_HEADERS),
  leaseMs: integer('KEYPOOL_LEASE_MS', 30_000, 1_000, 86_400_000),
  quotaTimeZone: timeZone('KEYPOOL_QUOTA_TZ', 'UTC'),
  reloadIntervalMs: integer('KEYPOOL_RELOAD_INTERVAL_MS', DEFAULT_RELOAD_INTERVAL_MS, 500, 86_400_000, { zeroMeansOff: true }),
  flushIntervalMs: integer('KEYPOOL_FLUSH_INTERVAL_MS', 1_000, 100, 600_000),
  writeBufferMax: integer('KEYPOOL_WRITE_BUFFER_MAX', 100_000, 100, 10_000_000),
  defaultCooldownMs: integer('KEYPOOL_DEFAULT_COOLDOWN_MS', DEFAULT_COOLDOWN_MS, 0, 86_400_000),
  retentionDays: integer('KEYPOOL_RETENTION_DAYS', 0, 0, 3650),
  migrateOnStart: boolean('KEYPOOL_MIGRATE_ON_START', true),
  demoSeed: boolean('KEYPOOL_DEMO_SEED', true),
  drainTimeoutMs: integer('KEYPOOL_DRAIN_TIMEOUT_MS', 10_000, 0, 600_000),
  logLevel: oneOf('LOG_LEVEL', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, 'info'),
  tracing: tracingEntry(),
};

export function loadConfig(overrides: Partial<KeypoolConfig> = {}, env: Env = process.env): KeypoolConfig {
  const config: Record<string, unknown> = {};
  for (const [field, read] of Object.entries(CONFIG_TABLE) as Array<[keyof KeypoolConfig, ConfigEntry<unknown>]>) {
    const override = overrides[field];
    config[field] = override === undefined ? read.fromEnv(env) : read.fromOverride(override);
  }
  // An explicit data directory (not the ./.keypool default) counts as configured, whichever source named it.
  if (overrides.dataDirConfigured === undefined && nonEmpty(overrides.dataDir) !== undefined) config.dataDirConfigured = true;
  return config as unknown as KeypoolConfig;
}

export function isLoopbackListen(listen: string): boolean {
  const host = splitHostPort(listen).host;
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `host:port` or `[v6]:port` -> parts; throws ConfigError-free plain Error on nonsense (callers validate first). */
export function splitHostPort(listen: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(listen);
  if (!match) throw new Error(`not a host:port address: ${listen}`);
  return { host: match[1] ?? '', port: Number(match[2]) };
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

function text(variable: string): ConfigEntry<string | undefined>;
function text(variable: string, fallback: string): ConfigEntry<string>;
function text(variable: string, fallback?: string): ConfigEntry<string | undefined> {
  return entry(variable, (value) => value ?? fallback);
}

/** True when KEYPOOL_DATA_DIR (or a dataDir override, see loadConfig) named the embedded store's directory. */
function dataDirConfigured(): ConfigEntry<boolean> {
  return {
    fromEnv: (env) => nonEmpty(env.KEYPOOL_DATA_DIR) !== undefined,
    fromOverride: (value) => value,
  };
}

/** OpenTelemetry traces from the standard OTEL_* variables; an override is checked against the same choices. */
function tracingEntry(): ConfigEntry<TracingConfig | null> {
  return {
    fromEnv: tracingFromEnv,
    fromOverride: (value) =>
      value === null
        ? null
        : {
            protocol: TRACING_PROTOCOLS.parse(value.protocol, 'OTEL_EXPORTER_OTLP_PROTOCOL'),
            serviceName: nonEmpty(value.serviceName) ?? DEFAULT_SERVICE_NAME,
          },
  };
}

const DEFAULT_SERVICE_NAME = 'keypool';
/** grpc is not offered: it would load a second gRPC stack for the exporter alone. */
const TRACING_PROTOCOLS = choice(['http/protobuf', 'http/json'] as const, 'http/protobuf');

function tracingFromEnv(env: Env): TracingConfig | null {
  if (nonEmpty(env.OTEL_SDK_DISABLED)?.toLowerCase() === 'true') return null;
  const exporter = nonEmpty(env.OTEL_TRACES_EXPORTER)?.toLowerCase();
  if (exporter === 'none') return null;
  if (exporter !== undefined && exporter !== 'otlp') {
    throw new ConfigError('OTEL_TRACES_EXPORTER', `keypool supports otlp or none, got "${exporter}"`);
  }
  const endpoint = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (exporter === undefined && endpoint === undefined) return null;
  const protocolVariable = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = TRACING_PROTOCOLS.parse(nonEmpty(env[protocolVariable]), protocolVariable);
  return { protocol, serviceName: nonEmpty(env.OTEL_SERVICE_NAME) ?? DEFAULT_SERVICE_NAME };
}

function redisUrl(variable: string): ConfigEntry<string | undefined> {
  return entry(variable, (value) => {
    if (value === undefined) return undefined;
    try {
      parseRedisUrl(value);
    } catch (error) {
      // RedisUrlError messages never repeat the URL: it may carry a password.
      if (error instanceof RedisUrlError) throw new ConfigError(variable, error.message);
      throw error;
    }
    return value;
  });
}

function listenAddress(variable: string, fallback: string): ConfigEntry<string> {
  return entry(variable, (given) => {
    const value = given ?? fallback;
    try {
      const { port } = splitHostPort(value);
      if (port > 65535) throw new Error('port out of range');
    } catch {
      throw new ConfigError(variable, `expected host:port (e.g. ${fallback}), got "${value}"`);
    }
    return value;
  });
}

/** Shortest accepted shared-secret token: `openssl rand -hex 32` gives 64 characters. */
export const MIN_TOKEN_CHARS = 32;

/** A shared secret; the error never quotes the value. */
function secretToken(variable: string): ConfigEntry<string | undefined> {
  return entry(variable, (value) => {
    if (value === undefined) return undefined;
    if (value.length < MIN_TOKEN_CHARS || !/^[\x21-\x7e]+$/.test(value)) {
      throw new ConfigError(variable, `expected at least ${MIN_TOKEN_CHARS} printable characters without spaces (e.g. \`openssl rand -hex 32\`)`);
    }
    return value;
  });
}

/** A whole number in min..max; with zeroMeansOff, 0 is accepted too and switches the feature off. */
function integer(variable: string, fallback: number, min: number, max: number, options: { zeroMeansOff?: boolean } = {}): ConfigEntry<number> {
  return entry(variable, (raw) => {
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw)) throw new ConfigError(variable, `expected a whole number, got "${raw}"`);
    const value = Number(raw);
    if (value === 0 && options.zeroMeansOff) return 0;
    if (value < min || value > max) {
      throw new ConfigError(variable, `expected ${options.zeroMeansOff ? `0 (off) or ` : ''}${min}..${max}, got ${value}`);
    }
    return value;
  });
}

/** An IANA time zone name, returned in its canonical spelling. */
function timeZone(variable: string, fallback: string): ConfigEntry<string> {
  return entry(variable, (raw) => {
    if (raw === undefined) return fallback;
    try {
      return new Intl.DateTimeFormat('en-US', { timeZone: raw }).resolvedOptions().timeZone;
    } catch {
      throw new ConfigError(variable, `"${raw}" is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)`);
    }
  });
}

function boolean(variable: string, fallback: boolean): ConfigEntry<boolean> {
  return entry(variable, (given) => {
    const raw = given?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    throw new ConfigError(variable, `expected true or false, got "${raw}"`);
  });
}

/** One of a fixed set of words; `parse` is shared by entries whose variable is chosen at read time (OTEL_*). */
function choice<T extends string>(allowed: readonly T[], fallback: T): { parse(raw: string | undefined, variable: string): T } {
  return {
    parse(raw, variable) {
      if (raw === undefined) return fallback;
      if (!(allowed as readonly string[]).includes(raw)) {
        throw new ConfigError(variable, `expected one of ${allowed.join(', ')}, got "${raw}"`);
      }
      return raw as T;
    },
  };
}

function oneOf<T extends string>(variable: string, allowed: readonly T[], fallback: T): ConfigEntry<T> {
  const words = choice(allowed, fallback);
  return entry(variable, (raw) => words.parse(raw, variable));
}

function hostNameList(variable: string): ConfigEntry<readonly string[]> {
  return entry(variable, (raw) => {
    if (raw === undefined) return [];
    const names = raw.split(',').map((part) => part.trim().toLowerCase()).filter(Boolean);
    const invalid = names.find((host) => !/^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$/.test(host));
    if (invalid !== undefined) throw new ConfigError(variable, `expected comma-separated host names without port (e.g. keypool-admin.internal), got "${invalid}"`);
    return names;
  });
}

function headerList(variable: string, fallback: readonly string[]): ConfigEntry<readonly string[]> {
  return entry(variable, (raw) => {
    if (raw === undefined) return fallback;
    const names = raw.split(',').map((part) => part.trim().toLowerCase()).filter(Boolean);
    const invalid = names.find((header) => !/^[a-z0-9-]+$/.test(header));
    if (names.length === 0 || invalid !== undefined) {
      throw new ConfigError(variable, `expected a comma-separated list of header names, got "${raw}"`);
    }
    return names;
  });
}

/** `provider=https://host,…` -> per-provider base URLs (rules in src/admin/health-check.ts). */
function baseUrls(variable: string): ConfigEntry<Readonly<Record<string, string>> | undefined> {
  return entry(variable, (raw) => {
    if (raw === undefined) return undefined;
    try {
      return parseBaseUrls(raw);
    } catch (error) {
      throw new ConfigError(variable, (error as Error).message);
    }
  });
}
