// REDIS_URL forms (src/stores/redis-url.ts) and their validation at start (src/config.ts): tables, no I/O.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { parseRedisUrl, type RedisEndpoint } from '../../src/stores/redis-url.js';

describe('parseRedisUrl', () => {
  const cases: Array<[string, RedisEndpoint]> = [
    ['redis://127.0.0.1:6379', { kind: 'server', url: 'redis://127.0.0.1:6379', tls: false }],
    ['rediss://user:pw@redis.example:6380/2', { kind: 'server', url: 'rediss://user:pw@redis.example:6380/2', tls: true }],
    [
      'redis+cluster://10.0.0.1:7000,10.0.0.2:7001',
      { kind: 'cluster', nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7001 }], tls: false, username: undefined, password: undefined },
    ],
    [
      'rediss+cluster://keypool:p%40ss%3Aw@redis-0.redis,redis-1.redis:6380/',
      { kind: 'cluster', nodes: [{ host: 'redis-0.redis', port: 6379 }, { host: 'redis-1.redis', port: 6380 }], tls: true, username: 'keypool', password: 'p@ss:w' },
    ],
    [
      'REDIS+CLUSTER://:only-password@[::1]:7000',
      { kind: 'cluster', nodes: [{ host: '::1', port: 7000 }], tls: false, username: undefined, password: 'only-password' },
    ],
  ];
  it.each(cases)('%s', (url, expected) => {
    expect(parseRedisUrl(url)).toEqual(expected);
  });

  const bad: Array<[string, RegExp]> = [
    ['http://127.0.0.1:6379', /expected redis:\/\//],
    ['127.0.0.1:6379', /expected redis:\/\//],
    ['redis+cluster://a:1,,b:2', /host:port seed nodes/],
    ['redis+cluster://a:99999', /host:port seed nodes/],
    ['redis+cluster://u:secret@a:7000/1', /no database number/],
    ['redis+cluster://u:%zz@a:7000', /percent-encoding/],
  ];
  it.each(bad)('rejects %s', (url, message) => {
    expect(() => parseRedisUrl(url)).toThrow(message);
  });
});

describe('REDIS_URL at start', () => {
  it('accepts a cluster URL as is', () => {
    const url = 'rediss+cluster://keypool:pw@r0:6379,r1:6379';
    expect(loadConfig({}, { REDIS_URL: url }).redisUrl).toBe(url);
  });

  it('refuses a bad one naming the variable, never echoing the URL (it may carry a password)', () => {
    const attempt = () => loadConfig({}, { REDIS_URL: 'redis+cluster://keypool:hunter2@r0:6379/5' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/^REDIS_URL: /);
    try {
      attempt();
    } catch (error) {
      expect(String(error)).not.toContain('hunter2');
    }
  });
});
