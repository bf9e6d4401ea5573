// The per-request memory that lets upstream-filter retries be decided on the client's headers.
import { describe, expect, it } from 'vitest';
import { RetryContexts } from '../../src/adapters/envoy/retry-context.js';
import type { Allow, HeaderBag } from '../../src/core/types.js';

const allow = (secret: string): Allow => ({
  kind: 'allow',
  keyId: 'k',
  accountId: secret,
  accountName: secret,
  priority: 1,
  tenant: null,
  removeHeaders: ['authorization', 'x-api-key'],
  setHeaders: [
    ['authorization', `Bearer ${secret}`],
    ['x-keypool-priority', '1'],
  ],
});

const client: HeaderBag = { 'x-request-id': 'req-1', authorization: 'Bearer kp_client', ':path': '/v1/chat' };
/** What Envoy's shared header map looks like on attempt 2 after keypool's mutation on attempt 1. */
const secondAttempt: HeaderBag = {
  'x-request-id': 'req-1',
  ':path': '/v1/chat',
  authorization: 'Bearer sk-a',
  'x-keypool-priority': '1',
};

describe('RetryContexts', () => {
  it('restores the client headers for the next attempt of a remembered request', () => {
    const r = new RetryContexts();
    r.remember(client, allow('sk-a'), 0);
    r.settle('req-1', 429, 10);
    expect({ ...r.recall(secondAttempt, 20) }).toEqual(client);
  });

  it('chains: attempt 3 is recognised by what attempt 2 injected', () => {
    const r = new RetryContexts();
    r.remember(client, allow('sk-a'), 0);
    const second = r.recall(secondAttempt, 1)!;
    r.remember(second, allow('sk-b'), 1);
    r.settle('req-1', 503, 2);
    const third = { ...secondAttempt, authorization: 'Bearer sk-b' };
    expect({ ...r.recall(third, 3) }).toEqual(client);
    expect(r.recall(secondAttempt, 3)).toBeNull(); // attempt-1 credentials no longer match
  });

  it('does not recall without the exact injected headers (an id alone proves nothing)', () => {
    const r = new RetryContexts();
    r.remember(client, allow('sk-a'), 0);
    expect(r.recall({ 'x-request-id': 'req-1', authorization: 'Bearer guess' }, 1)).toBeNull();
    expect(r.recall({ 'x-request-id': 'req-1' }, 1)).toBeNull();
    expect(r.recall({ authorization: 'Bearer sk-a', 'x-keypool-priority': '1' }, 1)).toBeNull();
  });

  it('forgets after a non-retriable outcome', () => {
    const r = new RetryContexts();
    r.remember(client, allow('sk-a'), 0);
    r.settle('req-1', 200, 1);
    expect(r.recall(secondAttempt, 2)).toBeNull();
    expect(r.size).toBe(0);
  });

  it('keeps a retriable outcome only for the retry window; an in-flight attempt for the attempt TTL', () => {
    const r = new RetryContexts({ maxEntries: 10, attemptTtlMs: 1_000, retryWindowMs: 100 });
    r.remember(client, allow('sk-a'), 0);
    expect(r.recall(secondAttempt, 999)).not.toBeNull();
    expect(r.recall(secondAttempt, 1_000)).toBeNull();
    r.remember(client, allow('sk-a'), 0);
    r.settle('req-1', null, 50); // reset without response
    expect(r.recall(secondAttempt, 149)).not.toBeNull();
    expect(r.recall(secondAttempt, 150)).toBeNull();
  });

  it('is bounded: oldest entries are evicted beyond maxEntries', () => {
    const r = new RetryContexts({ maxEntries: 3, attemptTtlMs: 1_000, retryWindowMs: 100 });
    for (let i = 0; i < 10; i++) r.remember({ ...client, 'x-request-id': `req-${i}` }, allow('sk-a'), i);
    expect(r.size).toBe(3);
    expect(r.recall({ ...secondAttempt, 'x-request-id': 'req-9' }, 10)).not.toBeNull();
    expect(r.recall({ ...secondAttempt, 'x-request-id': 'req-0' }, 10)).toBeNull();
  });

  it('requests without x-request-id are not remembered', () => {
    const r = new RetryContexts();
    r.remember({ authorization: 'Bearer kp_client' }, allow('sk-a'), 0);
    expect(r.size).toBe(0);
  });
});
