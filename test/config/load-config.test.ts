// loadConfig: one table of settings; environment values and explicit overrides meet the same parsers.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { DEFAULT_COOLDOWN_MS } from '../../src/core/response.js';
import { DEFAULT_RELOAD_INTERVAL_MS } from '../../src/snapshot/holder.js';

const TOKEN = 'a'.repeat(64);

describe('loadConfig', () => {
  it('gives each setting its one default', () => {
    const config = loadConfig({}, {});
    expect(config.reloadIntervalMs).toBe(DEFAULT_RELOAD_INTERVAL_MS);
    expect(config.defaultCooldownMs).toBe(DEFAULT_COOLDOWN_MS);
    expect(config.dataDir).toBe('./.keypool');
    expect(config.dataDirConfigured).toBe(false);
    expect(config.healthCheckBaseUrls).toBeUndefined();
    expect(config.healthCheckTimeoutMs).toBe(5_000);
    expect(config.tracing).toBeNull();
    expect(config.quotaReprobeMs).toBe(0);
  });

  it.each([
    ['0 (off)', '0', 0, 0],
    ['the floor', '500', 500, 500],
  ])('KEYPOOL_RELOAD_INTERVAL_MS accepts %s from the environment and as an override', (_name, text, value, expected) => {
    expect(loadConfig({}, { KEYPOOL_RELOAD_INTERVAL_MS: text }).reloadIntervalMs).toBe(expected);
    expect(loadConfig({ reloadIntervalMs: value }, {}).reloadIntervalMs).toBe(expected);
  });

  it.each([
    ['reloadIntervalMs', { reloadIntervalMs: 100 }, { KEYPOOL_RELOAD_INTERVAL_MS: '100' }, /^KEYPOOL_RELOAD_INTERVAL_MS: expected 0 \(off\) or 500\.\./],
    ['quotaReprobeMs', { quotaReprobeMs: 1_000 }, { KEYPOOL_QUOTA_REPROBE_MS: '1000' }, /^KEYPOOL_QUOTA_REPROBE_MS: expected 0 \(off\) or 60000\.\./],
    ['leaseMs', { leaseMs: 1.5 }, { KEYPOOL_LEASE_MS: '1.5' }, /^KEYPOOL_LEASE_MS: expected a whole number/],
    ['grpcListen', { grpcListen: 'nowhere' }, { KEYPOOL_GRPC_LISTEN: 'nowhere' }, /^KEYPOOL_GRPC_LISTEN: expected host:port/],
    ['stateFailureMode', { stateFailureMode: 'open' as never }, { KEYPOOL_STATE_FAILURE_MODE: 'open' }, /^KEYPOOL_STATE_FAILURE_MODE: expected one of local, closed/],
    ['keyHeaders', { keyHeaders: ['x api key'] }, { KEYPOOL_KEY_HEADERS: 'x api key' }, /^KEYPOOL_KEY_HEADERS: /],
    ['redisUrl', { redisUrl: 'http://r:6379' }, { REDIS_URL: 'http://r:6379' }, /^REDIS_URL: /],
    ['healthCheckBaseUrls', { healthCheckBaseUrls: { openai: 'http://example.com' } }, { KEYPOOL_HEALTHCHECK_BASE_URLS: 'openai=http://example.com' }, /^KEYPOOL_HEALTHCHECK_BASE_URLS: /],
  ])('%s: an override is refused exactly like the environment value', (_field, override, env, message) => {
    expect(() => loadConfig({}, env)).toThrow(message);
    expect(() => loadConfig(override, {})).toThrow(message);
    expect(() => loadConfig(override, {})).toThrow(ConfigError);
  });

  it('a secret token is checked on both paths and never quoted', () => {
    for (const attempt of [() => loadConfig({ grpcToken: 'short-secret-value' }, {}), () => loadConfig({}, { KEYPOOL_GRPC_TOKEN: 'short-secret-value' })]) {
      expect(attempt).toThrow(/^KEYPOOL_GRPC_TOKEN: /);
      expect(attempt).not.toThrow(/short-secret-value/);
    }
    expect(loadConfig({ grpcToken: TOKEN }, {}).grpcToken).toBe(TOKEN);
  });

  it('parses health-check base URLs once, from the environment or an override', () => {
    const fromEnv = loadConfig({}, { KEYPOOL_HEALTHCHECK_BASE_URLS: 'openai=https://api.example.com/v1/, azure-openai=http://127.0.0.1:8080' });
    expect(fromEnv.healthCheckBaseUrls).toEqual({ openai: 'https://api.example.com/v1', 'azure-openai': 'http://127.0.0.1:8080' });
    expect(loadConfig({ healthCheckBaseUrls: fromEnv.healthCheckBaseUrls }, {}).healthCheckBaseUrls).toEqual(fromEnv.healthCheckBaseUrls);
  });

  it('reads the secrets and knows whether the data directory was named', () => {
    const env = { KEYPOOL_ENCRYPTION_KEYS: ' v1:abc ', KEYPOOL_KEY_PEPPER: 'pepper', KEYPOOL_DATA_DIR: '/var/lib/keypool' };
    const config = loadConfig({}, env);
    expect(config).toMatchObject({ encryptionKeys: 'v1:abc', keyPepper: 'pepper', dataDir: '/var/lib/keypool', dataDirConfigured: true });
    expect(loadConfig({ dataDir: '/tmp/kp' }, {}).dataDirConfigured).toBe(true);
    expect(loadConfig({ dataDir: '  ' }, {}).dataDirConfigured).toBe(false);
  });

  it('a parsed config passed back as overrides parses to itself (startKeypool hands its settings to openRuntime)', () => {
    const env = {
      KEYPOOL_KEY_HEADERS: 'X-Api-Key, Authorization',
      KEYPOOL_ADMIN_ALLOWED_HOSTS: 'Admin.Internal',
      KEYPOOL_HEALTHCHECK_BASE_URLS: 'openai=https://api.example.com',
      OTEL_TRACES_EXPORTER: 'otlp',
      KEYPOOL_RELOAD_INTERVAL_MS: '0',
    };
    const once = loadConfig({}, env);
    expect(loadConfig(once, {})).toEqual(once);
    expect(once.keyHeaders).toEqual(['x-api-key', 'authorization']);
  });
});
