// A real Redis Cluster for tests: six `redis-server --cluster-enabled yes` processes on free loopback ports (3 masters,
// 3 replicas, created with `redis-cli --cluster create --cluster-replicas 1`), torn down by stop() or when the test
// worker exits. Needs redis-server and redis-cli (7.x) on PATH; `redisClusterToolsAvailable()` says whether they are.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { killOnExit } from './kill-on-exit.js';

/** Failure detection of the test cluster: a dead master is replaced by its replica a few seconds after this. */
const NODE_TIMEOUT_MS = 2_000;
const READY_TIMEOUT_MS = 30_000;

/** True when redis-server and redis-cli run; a notice when not, an error under KEYPOOL_REQUIRE_SERVICES=1 (CI). */
export function redisClusterToolsAvailable(suite: string): boolean {
  const missing = ['redis-server', 'redis-cli'].filter((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return true;
  if (process.env.KEYPOOL_REQUIRE_SERVICES === '1') throw new Error(`${suite}: KEYPOOL_REQUIRE_SERVICES=1 but ${missing.join(', ')} missing`);
  console.warn(`[skip] ${suite}: ${missing.join(', ')} not on PATH (apt-get install redis-server)`);
  return false;
}

export interface ClusterNode {
  readonly port: number;
  readonly process: ChildProcess;
}

export class LocalRedisCluster {
  private constructor(
    readonly nodes: ClusterNode[],
    private readonly dir: string,
  ) {}

  /** redis+cluster:// URL with every node as a seed (keypool's REDIS_URL form); `auth` is "user:password". */
  url(auth?: string): string {
    return `redis+cluster://${auth ? `${auth}@` : ''}${this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  }

  /** A plain connection to one node (for CLUSTER commands). Caller disconnects it. */
  connect(port: number): Redis {
    return new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: false, retryStrategy: () => null });
  }

  static async start(): Promise<LocalRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'kp-redis-cluster-'));
    const ports = await freeClusterPorts(6);
    const nodes = ports.map((port) => ({ port, process: startNode(port, dir) }));
    const cluster = new LocalRedisCluster(nodes, dir);
    try {
      await Promise.all(ports.map((port) => waitFor(() => ping(port), `redis-server :${port} to start`)));
      const created = spawnSync(
        'redis-cli',
        ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'],
        { encoding: 'utf8', timeout: READY_TIMEOUT_MS },
      );
      if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}\n${created.stderr}`);
      await cluster.waitHealthy();
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** Every live node says cluster_state:ok, and every master has a replica whose link is up. */
  async waitHealthy(): Promise<void> {
    await waitFor(async () => {
      for (const node of this.nodes) {
        if (!isRunning(node.process)) continue;
        const info = await command(node.port, ['CLUSTER', 'INFO']);
        if (!info?.includes('cluster_state:ok')) return false;
      }
      const masters = await this.masters();
      if (masters.length !== 3) return false;
      for (const master of masters) {
        const replication = await command(master.port, ['INFO', 'replication']);
        if (!/slave\d+:.*state=online/.test(replication ?? '')) return false;
      }
      return true;
    }, 'the Redis Cluster to be healthy');
  }

  /** Live masters with the slot ranges they serve (from CLUSTER SHARDS of any live node). */
  async masters(): Promise<Array<{ port: number; slots: Array<[number, number]> }>> {
    const alive = this.nodes.filter((n) => isRunning(n.process));
    for (const node of alive) {
      const redis = this.connect(node.port);
      try {
        const nodesText = (await redis.call('CLUSTER', 'NODES')) as string;
        const masters: Array<{ port: number; slots: Array<[number, number]> }> = [];
        for (const line of nodesText.trim().split('\n')) {
          const fields = line.split(' ');
          const flags = fields[2] ?? '';
          if (!flags.includes('master') || flags.includes('fail')) continue;
          const port = Number(/:(\d+)@/.exec(fields[1] ?? '')?.[1]);
          const slots = fields.slice(8).filter((f) => /^\d+(-\d+)?$/.test(f)).map((f) => {
            const [from, to] = f.split('-').map(Number);
            return [from!, to ?? from!] as [number, number];
          });
          if (slots.length > 0) masters.push({ port, slots });
        }
        return masters;
      } catch {
        // try the next node
      } finally {
        redis.disconnect();
      }
    }
    return [];
  }

  /** Port of the master serving the slot of `hashTag` (the text inside {...}). */
  async masterOf(hashTag: string): Promise<number> {
    const slot = Number(await command(this.nodes.find((n) => isRunning(n.process))!.port, ['CLUSTER', 'KEYSLOT', hashTag]));
    const owner = (await this.masters()).find((m) => m.slots.some(([from, to]) => slot >= from && slot <= to));
    if (owner === undefined) throw new Error(`no live master serves slot ${slot}`);
    return owner.port;
  }

  /** Kills one node the hard way (no shutdown, no save): its replica takes over after the node timeout. */
  kill(port: number): void {
    const node = this.nodes.find((n) => n.port === port);
    if (node === undefined) throw new Error(`no node on ${port}`);
    node.process.kill('SIGKILL');
  }

  /** Runs `cmd` on every live node (e.g. ACL SETUSER: ACLs are per node). */
  async onEveryNode(cmd: string[]): Promise<void> {
    for (const node of this.nodes.filter((n) => isRunning(n.process))) {
      const reply = await command(node.port, cmd);
      if (reply === null) throw new Error(`${cmd[0]} failed on :${node.port}`);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(
        (node) =>
          new Promise<void>((resolve) => {
            if (!isRunning(node.process)) return resolve();
            node.process.once('exit', () => resolve());
            node.process.kill('SIGKILL');
          }),
      ),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function startNode(port: number, dir: string): ChildProcess {
  const child = spawn(
    'redis-server',
    [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', String(NODE_TIMEOUT_MS),
      // A dead master costs only its own slots (the other pools keep shared state), as production clusters run it.
      '--cluster-require-full-coverage', 'no',
      '--dir', dir,
      '--dbfilename', `dump-${port}.rdb`,
      '--save', '',
      '--appendonly', 'no',
      '--enable-debug-command', 'local',
      '--loglevel', 'warning',
    ],
    { stdio: 'ignore' },
  );
  killOnExit(child);
  return child;
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** One command on one node with a fresh connection; null when the node does not answer. */
async function command(port: number, cmd: string[]): Promise<string | null> {
  const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000, lazyConnect: true });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const reply = await redis.call(cmd[0]!, ...cmd.slice(1));
    return String(reply);
  } catch {
    return null;
  } finally {
    redis.disconnect();
  }
}

async function ping(port: number): Promise<boolean> {
  return (await command(port, ['PING'])) === 'PONG';
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** `count` ports whose cluster bus port (+10000) is free too. */
async function freeClusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && attempt < 200; attempt++) {
    const port = await freePort();
    if (port + 10_000 > 65_535 || ports.includes(port)) continue;
    if (await canBind(port + 10_000)) ports.push(port);
  }
  if (ports.length < count) throw new Error('no free loopback ports for a Redis Cluster');
  return ports;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
