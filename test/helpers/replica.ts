// keypool replicas as real processes: `node dist/src/cli/main.js serve` children configured by environment, the way
// an operator runs N replicas behind Envoy. The multi-replica and fault tests (test/replicas/) drive them over
// ext_proc gRPC and kill them with real signals.
//
// Needs a build (`npx tsc -p tsconfig.json`, or `npm test`, which builds first): the children run dist/, not src/.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Keyring } from '../../src/secrets/keyring.js';
import { generatePepperSpec } from '../../src/secrets/pepper.js';
import { ExtProcClient } from '../envoy/ext-proc-client.js';
import { killOnExit } from './kill-on-exit.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI_ENTRY = join(ROOT, 'dist', 'src', 'cli', 'main.js');
/** What `startKeypool` prints once the ext_proc server is bound (with the real port when 0 was asked for). */
const LISTENING = /ext_proc gRPC (?:listening )?on (\S+?);/;
/** The admin API's address on the same line (absent in builds without the admin API). */
const ADMIN = /admin API and \/metrics on (http:\/\/\S+?);/;
/** Bound on the output kept per replica (enough for warn-level logs of a test run). */
const MAX_OUTPUT_CHARS = 2_000_000;

/** The two secrets every replica of one deployment must share (generated once per test file). */
export interface ReplicaSecrets {
  readonly KEYPOOL_ENCRYPTION_KEYS: string;
  readonly KEYPOOL_KEY_PEPPER: string;
}

export function generateReplicaSecrets(): ReplicaSecrets {
  return { KEYPOOL_ENCRYPTION_KEYS: Keyring.generateSpec(), KEYPOOL_KEY_PEPPER: generatePepperSpec() };
}

export interface ReplicaOptions {
  /** For messages and logs (r1, r2, ...). */
  readonly name: string;
  /** postgres://... of the test database (or of a proxy in front of it). */
  readonly databaseUrl: string;
  /** redis://... (or a proxy in front of it); unset = per-replica in-memory state. */
  readonly redisUrl?: string | undefined;
  readonly secrets: ReplicaSecrets;
  /** Further settings (KEYPOOL_LEASE_MS, KEYPOOL_REDIS_KEY_PREFIX, ...); they win over the defaults here. */
  readonly env?: Readonly<Record<string, string>> | undefined;
  /** How long to wait for gRPC health SERVING. Default 30 s (two cores shared with other suites). */
  readonly readyTimeoutMs?: number | undefined;
}

export interface ReplicaExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class Replica {
  /** host:port of the ext_proc (and gRPC health) server. */
  readonly grpcAddress: string;
  /** One gRPC channel to this replica; streams are multiplexed on it. */
  readonly client: ExtProcClient;
  /** Settles when the process has exited. */
  readonly exited: Promise<ReplicaExit>;
  /** http://host:port of the admin API (metrics), when the build serves one. */
  readonly adminUrl: string | null;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    grpcAddress: string,
    exited: Promise<ReplicaExit>,
    private readonly output: { text: string },
  ) {
    this.grpcAddress = grpcAddress;
    this.exited = exited;
    this.client = new ExtProcClient(grpcAddress);
    this.adminUrl = ADMIN.exec(output.text)?.[1] ?? null;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything the process wrote to stdout and stderr so far (bounded). */
  get logs(): string {
    return this.output.text;
  }

  /** pino JSON lines of the output (other lines skipped). */
  logRecords(): Array<Record<string, unknown>> {
    const records: Array<Record<string, unknown>> = [];
    for (const line of this.output.text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        records.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line cut by the output bound
      }
    }
    return records;
  }

  /**
   * One sample of the replica's Prometheus /metrics: the value of `name` whose labels include `labels`; null when the
   * admin API or the series is absent.
   */
  async metric(name: string, labels: Readonly<Record<string, string>> = {}): Promise<number | null> {
    if (this.adminUrl === null) return null;
    const response = await fetch(`${this.adminUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
    if (!response.ok) return null;
    const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    for (const line of (await response.text()).split('\n')) {
      if (!line.startsWith(name)) continue;
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
      if (!match || match[1] !== name) continue;
      const have = (match[2] ?? '').split(',');
      if (wanted.every((label) => have.includes(label))) return Number(match[3]);
    }
    return null;
  }

  static async start(options: ReplicaOptions): Promise<Replica> {
    if (!existsSync(CLI_ENTRY)) throw new Error(`${CLI_ENTRY} is missing: build first (npx tsc -p tsconfig.json)`);
    const env: Record<string, string> = {
      // Only what a replica needs: nothing of the test worker's own configuration leaks in.
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'production',
      DATABASE_URL: options.databaseUrl,
      ...options.secrets,
      KEYPOOL_GRPC_LISTEN: '127.0.0.1:0',
      KEYPOOL_ADMIN_LISTEN: '127.0.0.1:0',
      KEYPOOL_DEMO_SEED: 'false',
      LOG_LEVEL: 'warn',
      ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
      ...options.env,
    };
    const child = spawn(process.execPath, [CLI_ENTRY, 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit(child);
    const output = { text: '' };
    const append = (chunk: Buffer): void => {
      output.text += chunk.toString('utf8');
      if (output.text.length > MAX_OUTPUT_CHARS) output.text = output.text.slice(-MAX_OUTPUT_CHARS / 2);
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    const exited = new Promise<ReplicaExit>((resolveExit) => {
      child.once('exit', (code, signal) => {
        resolveExit({ code, signal });
      });
    });

    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const address = await new Promise<string>((resolveAddress, reject) => {
      const timer = setTimeout(() => fail(new Error('no "listening" line')), timeoutMs);
      const onData = (): void => {
        const match = LISTENING.exec(output.text);
        if (match) {
          cleanup();
          resolveAddress(match[1]!);
        }
      };
      const onExit = (code: number | null, signal: string | null): void => fail(new Error(`exited early (code ${code}, signal ${signal})`));
      const cleanup = (): void => {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.off('exit', onExit);
      };
      function fail(error: Error): void {
        cleanup();
        child.kill('SIGKILL');
        reject(new Error(`replica ${options.name} did not start: ${error.message}\n${output.text.slice(-4_000)}`));
      }
      child.stdout!.on('data', onData);
      child.once('exit', onExit);
    });

    const replica = new Replica(options.name, child, address, exited, output);
    try {
      await replica.waitServing(deadline);
    } catch (error) {
      await replica.kill('SIGKILL');
      throw error;
    }
    return replica;
  }

  private async waitServing(deadline: number): Promise<void> {
    let last = 'no answer';
    while (Date.now() < deadline) {
      if (!this.running) break;
      try {
        last = await this.client.check();
        if (last === 'SERVING') return;
      } catch (error) {
        last = String(error);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`replica ${this.name} never reported SERVING (${last})\n${this.logs.slice(-4_000)}`);
  }

  /** Sends `signal` and waits for the exit (SIGKILL after timeoutMs if it did not go by itself). */
  async kill(signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 15_000): Promise<ReplicaExit> {
    if (this.running) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const forced = new Promise<void>((r) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        r();
      }, timeoutMs);
    });
    await Promise.race([this.exited, forced]);
    clearTimeout(timer);
    // After the exit: streams still open on the channel may be finishing a graceful drain until then.
    this.client.close();
    return this.exited;
  }

  /** Graceful stop (SIGTERM: drain, flush, exit). */
  stop(timeoutMs?: number): Promise<ReplicaExit> {
    return this.kill('SIGTERM', timeoutMs);
  }
}

/** Starts `count` replicas with the same settings, in parallel (names r1..rN, or `prefix`1..N). */
export async function startReplicas(count: number, options: Omit<ReplicaOptions, 'name'> & { readonly prefix?: string }): Promise<Replica[]> {
  const started = await Promise.allSettled(
    Array.from({ length: count }, (_, i) => Replica.start({ ...options, name: `${options.prefix ?? 'r'}${i + 1}` })),
  );
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.kill('SIGKILL') : undefined)));
    throw failed.reason;
  }
  return started.map((s) => (s as PromiseFulfilledResult<Replica>).value);
}

/** Stops every replica still running (SIGTERM, then SIGKILL). Safe in afterAll with partially started groups. */
export async function stopAll(replicas: ReadonlyArray<Replica | undefined>): Promise<void> {
  await Promise.all(replicas.map((r) => (r?.running ? r.stop(10_000) : r?.client.close())));
}
