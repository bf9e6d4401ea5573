// The ioredis client for REDIS_URL (forms in ./redis-url.ts): a Redis for one server, a Cluster for a cluster URL.
// The rate-state scripts touch one hash-tagged slot each, so the store works on either client unchanged.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { parseRedisUrl } from './redis-url.js';

/**
 * Cluster settings for the request path, on top of the per-node `nodeOptions`: fail fast while the cluster is
 * unreachable (the resilient wrapper decides what a failed admission means) and follow a moved slot quickly.
 */
const CLUSTER_DEFAULTS: ClusterOptions = {
  enableOfflineQueue: false,
  enableAutoPipelining: true,
  // A command sent to a node that just died is retried (after a slot refresh) instead of failing the admission at
  // once; the resilient wrapper's timeout still bounds the whole admission.
  retryDelayOnFailover: 100,
  retryDelayOnClusterDown: 100,
  retryDelayOnTryAgain: 100,
  maxRedirections: 16,
  slotsRefreshTimeout: 1_000,
  // Also picks up a failover the client did not trip over (a promoted replica, a resharded slot).
  slotsRefreshInterval: 2_000,
  clusterRetryStrategy: (times: number) => Math.min(50 * times, 1_000),
};

/**
 * An ioredis client for `url`: a `Redis` for one server, a `Cluster` for a cluster URL. `nodeOptions` apply to every
 * connection (timeouts, retries); TLS and the ACL user come from the URL.
 */
export function createRedisClient(url: string, nodeOptions: RedisOptions): Redis | Cluster {
  const endpoint = parseRedisUrl(url);
  if (endpoint.kind === 'server') return new Redis(url, nodeOptions);
  const { retryStrategy: _perNodeRetry, enableOfflineQueue: _perNodeQueue, ...perNode } = nodeOptions;
  return new Cluster(
    endpoint.nodes.map((node) => ({ host: node.host, port: node.port })),
    {
      ...CLUSTER_DEFAULTS,
      redisOptions: {
        ...perNode,
        ...(endpoint.username === undefined ? {} : { username: endpoint.username }),
        ...(endpoint.password === undefined ? {} : { password: endpoint.password }),
        // TLS on every node connection, verified against Node's CA store (NODE_EXTRA_CA_CERTS adds a private CA).
        ...(endpoint.tls ? { tls: {} } : {}),
      },
    },
  );
}
