// Which Redis REDIS_URL names (parsing only; ./redis-connection.ts makes the ioredis client): one server
// (redis://, rediss://) or a Redis Cluster (redis+cluster://, rediss+cluster:// with comma-separated seed nodes).
//
//   redis://[user:password@]host[:port][/db]                 one server (ioredis parses it)
//   rediss://[user:password@]host[:port][/db]                the same over TLS
//   redis+cluster://[user:password@]host:port[,host:port...]   Redis Cluster, seed nodes (the rest are discovered)
//   rediss+cluster://[user:password@]host:port[,host:port...]  Redis Cluster over TLS (every node: tls-cluster yes)
//
// TLS verifies the server certificate against Node's CA store; a private CA is added with the standard
// NODE_EXTRA_CA_CERTS=/path/ca.pem. The ACL user and password are percent-decoded (a password with '@' is written %40).

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

export type RedisEndpoint =
  | { readonly kind: 'server'; readonly url: string; readonly tls: boolean }
  | {
      readonly kind: 'cluster';
      readonly nodes: readonly RedisNode[];
      readonly tls: boolean;
      readonly username: string | undefined;
      readonly password: string | undefined;
    };

/** Bad REDIS_URL. The message never contains the URL (it may carry a password). */
export class RedisUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisUrlError';
  }
}

const DEFAULT_PORT = 6379;
/** Seed nodes accepted in one URL (a bound; ioredis discovers the rest of the cluster from any of them). */
const MAX_SEED_NODES = 64;
const SCHEME = /^(rediss?)(\+cluster)?:\/\//i;

export function parseRedisUrl(url: string): RedisEndpoint {
  const scheme = SCHEME.exec(url);
  if (!scheme) throw new RedisUrlError('expected redis://, rediss://, redis+cluster:// or rediss+cluster://');
  const tls = scheme[1]!.toLowerCase() === 'rediss';
  if (!scheme[2]) {
    // One server: ioredis reads this form itself (user, password, db, TLS); only check it parses.
    try {
      new URL(url);
    } catch {
      throw new RedisUrlError('not a valid URL');
    }
    return { kind: 'server', url, tls };
  }
  const rest = url.slice(scheme[0].length);
  const at = rest.lastIndexOf('@');
  const auth = at < 0 ? undefined : rest.slice(0, at);
  const hostPart = rest.slice(at + 1).replace(/\/$/, '');
  if (hostPart.includes('/') || hostPart.includes('?')) {
    throw new RedisUrlError('a cluster URL takes no database number, path or query (Redis Cluster has one database)');
  }
  const nodes = hostPart.split(',').map(parseNode);
  if (nodes.length > MAX_SEED_NODES) throw new RedisUrlError(`at most ${MAX_SEED_NODES} seed nodes`);
  const { username, password } = parseAuth(auth);
  return { kind: 'cluster', nodes, tls, username, password };
}

function parseNode(text: string): RedisNode {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(text.trim());
  const port = match?.[2] === undefined ? DEFAULT_PORT : Number(match[2]);
  if (!match || port < 1 || port > 65535) throw new RedisUrlError('expected host:port seed nodes separated by commas');
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

function parseAuth(auth: string | undefined): { username: string | undefined; password: string | undefined } {
  if (auth === undefined || auth === '') return { username: undefined, password: undefined };
  const colon = auth.indexOf(':');
  const decode = (text: string): string | undefined => {
    if (text === '') return undefined;
    try {
      return decodeURIComponent(text);
    } catch {
      throw new RedisUrlError('bad percent-encoding in the user or password');
    }
  };
  // "user:password", ":password" (default user) or "password" alone, as redis-cli and ioredis read it.
  return colon < 0 ? { username: undefined, password: decode(auth) } : { username: decode(auth.slice(0, colon)), password: decode(auth.slice(colon + 1)) };
}
