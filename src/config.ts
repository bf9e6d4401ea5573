// Service configuration: parsed and validated once at start. Precedence: explicit overrides > environment > defaults.
import { DEFAULT_KEY_HEADERS } from './core/apikey.js';
import { DEFAULT_COOLDOWN_MS } from './core/response.js';
import { DEFAULT_STATE_TIMEOUT_MS, type StateFailureMode } from './stores/resilient-state.js';
import { parseRedisUrl, RedisUrlError } from './stores/redis-url.js';
import type { TracingSettings } from './telemetry/tracing.js';

export type { StateFailureMode };


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
  /** Provider base URLs for `check-health` probes (`openai=https://…,azure-openai=https://…`); unset = built-in defaults. */
  readonly healthCheckBaseUrls: string | undefined;
  /** Deadline of one `check-health` probe. */
  readonly healthCheckTimeoutMs: number;
  /** Revoke keys that are past rotate_after_days in the periodic lifecycle sweep. */
  readonly autoRevokeOverdue: boolean;
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
  /** Safety-net full reload of the config snapshot (the change feed normally reloads within ~100 ms). */
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
  readonly tracing: TracingSettings | null;
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

export function loadConfig(overrides: Partial<KeypoolConfig> = {}, env: Env = process.env): KeypoolConfig {
  const fromEnv: KeypoolConfig = {
    databaseUrl: nonEmpty(env.DATABASE_URL),
    encryptionKeys: nonEmpty(env.KEYPOOL_ENCRYPTION_KEYS),
    keyPepper: nonEmpty(env.KEYPOOL_KEY_PEPPER),
    dataDir: nonEmpty(env.KEYPOOL_DATA_DIR) ?? './.keypool',
    grpcListen: listenAddress(env, 'KEYPOOL_GRPC_LISTEN', '127.0.0.1:50051'),
    grpcTlsCertFile: nonEmpty(env.KEYPOOL_GRPC_TLS_CERT),
    grpcTlsKeyFile: nonEmpty(env.KEYPOOL_GRPC_TLS_KEY),
    grpcTlsClientCaFile: nonEmpty(env.KEYPOOL_GRPC_TLS_CLIENT_CA),
    grpcToken: secretToken(env, 'KEYPOOL_GRPC_TOKEN'),
    adminListen: listenAddress(env, 'KEYPOOL_ADMIN_LISTEN', '127.0.0.1:9901'),
    adminToken: nonEmpty(env.KEYPOOL_ADMIN_TOKEN),
    adminAllowedHosts: hostNameList(env, 'KEYPOOL_ADMIN_ALLOWED_HOSTS'),
    adminTokenName: nonEmpty(env.KEYPOOL_ADMIN_TOKEN_NAME) ?? 'admin',
    metricsAccess: oneOf(env, 'KEYPOOL_METRICS_ACCESS', ['auto', 'public', 'token'] as const, 'auto'),
    healthCheckBaseUrls: nonEmpty(env.KEYPOOL_HEALTHCHECK_BASE_URLS),
    healthCheckTimeoutMs: integer(env, 'KEYPOOL_HEALTHCHECK_TIMEOUT_MS', 5_000, 100, 60_000),
    autoRevokeOverdue: boolean(env, 'KEYPOOL_AUTO_REVOKE_OVERDUE', false),
    redisUrl: redisUrl(env),
    redisKeyPrefix: nonEmpty(env.KEYPOOL_REDIS_KEY_PREFIX) ?? '',
    stateFailureMode: oneOf(env, 'KEYPOOL_STATE_FAILURE_MODE', ['local', 'closed'] as const, 'local'),
    expectedReplicas: integer(env, 'KEYPOOL_EXPECTED_REPLICAS', 1, 1, 1000),
    stateTimeoutMs: integer(env, 'KEYPOOL_STATE_TIMEOUT_MS', DEFAULT_STATE_TIMEOUT_MS, 1, 10_000),
    keyHeaders: headerList(env, 'KEYPOOL_KEY_HEADERS', DEFAULT_KEY_HEADERS),
    leaseMs: integer(env, 'KEYPOOL_LEASE_MS', 30_000, 1_000, 86_400_000),
    quotaTimeZone: timeZone(env, 'KEYPOOL_QUOTA_TZ', 'UTC'),
    reloadIntervalMs: integer(env, 'KEYPOOL_RELOAD_INTERVAL_MS', 30_000, 500, 86_400_000),
    flushIntervalMs: integer(env, 'KEYPOOL_FLUSH_INTERVAL_MS', 1_000, 100, 600_000),
    writeBufferMax: integer(env, 'KEYPOOL_WRITE_BUFFER_MAX', 100_000, 100, 10_000_000),
    defaultCooldownMs: integer(env, 'KEYPOOL_DEFAULT_COOLDOWN_MS', DEFAULT_COOLDOWN_MS, 0, 86_400_000),
    retentionDays: integer(env, 'KEYPOOL_RETENTION_DAYS', 0, 0, 3650),
    migrateOnStart: boolean(env, 'KEYPOOL_MIGRATE_ON_START', true),
    demoSeed: boolean(env, 'KEYPOOL_DEMO_SEED', true),
    drainTimeoutMs: integer(env, 'KEYPOOL_DRAIN_TIMEOUT_MS', 10_000, 0, 600_000),
    logLevel: oneOf(env, 'LOG_LEVEL', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, 'info'),
    tracing: tracingSettings(env),
  };
  return { ...fromEnv, ...definedOnly(overrides) };
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

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

function tracingSettings(env: Env): TracingSettings | null {
  if (nonEmpty(env.OTEL_SDK_DISABLED)?.toLowerCase() === 'true') return null;
  const exporter = nonEmpty(env.OTEL_TRACES_EXPORTER)?.toLowerCase();
  if (exporter === 'none') return null;
  if (exporter !== undefined && exporter !== 'otlp') {
    throw new ConfigError('OTEL_TRACES_EXPORTER', `keypool supports otlp or none, got "${exporter}"`);
  }
  const endpoint = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (exporter === undefined && endpoint === undefined) return null;
  // grpc is not offered: it would load a second gRPC stack for the exporter alone.
  const protocolVariable = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = oneOf(env, protocolVariable, ['http/protobuf', 'http/json'] as const, 'http/protobuf');
  return { protocol, serviceName: nonEmpty(env.OTEL_SERVICE_NAME) ?? 'keypool' };
}

function redisUrl(env: Env): string | undefined {
  const value = nonEmpty(env.REDIS_URL);
  if (value === undefined) return undefined;
  try {
    parseRedisUrl(value);
  } catch (error) {
    // RedisUrlError messages never repeat the URL: it may carry a password.
    if (error instanceof RedisUrlError) throw new ConfigError('REDIS_URL', error.message);
    throw error;
  }
  return value;
}

function listenAddress(env: Env, name: string, fallback: string): string {
  const value = nonEmpty(env[name]) ?? fallback;
  try {
    const { port } = splitHostPort(value);
    if (port > 65535) throw new Error('port out of range');
  } catch {
    throw new ConfigError(name, `expected host:port (e.g. ${fallback}), got "${value}"`);
  }
  return value;
}

/** Shortest accepted shared-secret token: `openssl rand -hex 32` gives 64 characters. */
export const MIN_TOKEN_CHARS = 32;

/** A shared secret from the environment; the error never quotes the value. */
function secretToken(env: Env, name: string): string | undefined {
  const value = nonEmpty(env[name]);
  if (value === undefined) return undefined;
  if (value.length < MIN_TOKEN_CHARS || !/^[\x21-\x7e]+$/.test(value)) {
    throw new ConfigError(name, `expected at least ${MIN_TOKEN_CHARS} printable characters without spaces (e.g. \`openssl rand -hex 32\`)`);
  }
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `expected ${min}..${max}, got ${value}`);
  return value;
}

/** An IANA zone name Intl knows (UTC and Etc/* included). */
function timeZone(env: Env, name: string, fallback: string): string {
  const value = nonEmpty(env[name]);
  if (value === undefined) return fallback;
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: value }).resolvedOptions().timeZone;
  } catch {
    throw new ConfigError(name, `"${value}" is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)`);
  }
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = nonEmpty(env[name])?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

function hostNameList(env: Env, name: string): readonly string[] {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return [];
  const names = raw.split(',').map((part) => part.trim().toLowerCase()).filter(Boolean);
  const invalid = names.find((host) => !/^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$/.test(host));
  if (invalid !== undefined) throw new ConfigError(name, `expected comma-separated host names without port (e.g. keypool-admin.internal), got "${invalid}"`);
  return names;
}

function headerList(env: Env, name: string, fallback: readonly string[]): readonly string[] {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  const names = raw.split(',').map((part) => part.trim().toLowerCase()).filter(Boolean);
  const invalid = names.find((header) => !/^[a-z0-9-]+$/.test(header));
  if (names.length === 0 || invalid !== undefined) {
    throw new ConfigError(name, `expected a comma-separated list of header names, got "${raw}"`);
  }
  return names;
}
