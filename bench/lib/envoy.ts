// The real Envoy for bench:envoy (found as the tests find it): render the shipped envoy/envoy.yaml for the bench (ports, the
// mock upstream, optionally without keypool), start it pinned to a CPU, and stop it. The minimal bits of
// test/helpers/envoy.ts, plus what a bench needs: the process id (CPU time from /proc), no output kept in memory,
// and the access log written to /dev/null (same format and cost, no pipe into the load generator's process).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { pinned, sleep, track } from './procs.js';
import { REPO_ROOT } from './report.js';

type Json = Record<string, any>;

const EXT_PROC_FILTER = 'envoy.filters.http.ext_proc';

export interface BenchEnvoyConfig {
  /** keypool's ext_proc port, or null for "Envoy alone": the ext_proc filter, its per-route settings and the keypool cluster removed. */
  readonly keypoolPort: number | null;
  /** Port of the mock provider every provider cluster points at. */
  readonly upstreamPort: number;
  /** Drop the keypool cluster's gRPC health check (for a processor without the health service). */
  readonly noHealthCheck?: boolean;
  /** The shipped config under envoy/ to render (default envoy.yaml; bench:sse-usage also runs envoy-usage.yaml). */
  readonly file?: string;
}

/** envoy/envoy.yaml as shipped, with loopback ports, the mock upstream (plain HTTP) and the access log to /dev/null. */
export function renderBenchConfig(options: BenchEnvoyConfig): string {
  const config = parse(readFileSync(join(REPO_ROOT, 'envoy', options.file ?? 'envoy.yaml'), 'utf8')) as Json;
  config['admin']['address'] = { socket_address: { address: '127.0.0.1', port_value: 0 } };
  const resources = config['static_resources'] as { listeners: Json[]; clusters: Json[] };
  for (const listener of resources.listeners) {
    listener['address'] = { socket_address: { address: '127.0.0.1', port_value: 0 } };
    for (const chain of listener['filter_chains'] as Json[]) {
      for (const filter of chain['filters'] as Json[]) {
        const hcm = filter['typed_config'] as Json;
        for (const log of (hcm['access_log'] ?? []) as Json[]) {
          const format = log['typed_config']['log_format'];
          log['name'] = 'envoy.access_loggers.file';
          log['typed_config'] = {
            '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
            path: '/dev/null',
            log_format: format,
          };
        }
        if (options.keypoolPort === null) {
          hcm['http_filters'] = (hcm['http_filters'] as Json[]).filter((f) => f['name'] !== EXT_PROC_FILTER);
          for (const host of hcm['route_config']['virtual_hosts'] as Json[]) {
            for (const route of host['routes'] as Json[]) {
              if (route['typed_per_filter_config']) delete route['typed_per_filter_config'][EXT_PROC_FILTER];
              if (route['typed_per_filter_config'] && Object.keys(route['typed_per_filter_config']).length === 0) delete route['typed_per_filter_config'];
            }
          }
        }
      }
    }
  }
  resources.clusters = resources.clusters.filter((c) => options.keypoolPort !== null || c['name'] !== 'keypool');
  for (const cluster of resources.clusters) {
    if (cluster['name'] === 'keypool' && options.noHealthCheck) delete cluster['health_checks'];
    const port = cluster['name'] === 'keypool' ? options.keypoolPort! : options.upstreamPort;
    if (cluster['name'] !== 'keypool') {
      cluster['type'] = 'STATIC';
      delete cluster['dns_lookup_family'];
      delete cluster['transport_socket'];
    }
    cluster['load_assignment'] = {
      cluster_name: cluster['name'],
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
    };
  }
  return stringify(config);
}

export interface BenchEnvoy {
  readonly pid: number;
  readonly port: number;
  readonly adminUrl: string;
  output(): string;
  stop(): Promise<void>;
}

/** Starts Envoy with one worker (`--concurrency 1`) on `cpuList`, waits for /ready, reads the listener port. */
export async function startBenchEnvoy(bin: string, config: string, cpuList: string | null): Promise<BenchEnvoy> {
  const dir = mkdtempSync(join(tmpdir(), 'keypool-bench-envoy-'));
  const configPath = join(dir, 'envoy.yaml');
  const adminPath = join(dir, 'admin-address');
  writeFileSync(configPath, config);
  const [command, args] = pinned(cpuList, bin, [
    '-c', configPath, '--admin-address-path', adminPath, '--disable-hot-restart', '--concurrency', '1', '-l', 'warning',
  ]);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let output = '';
  const append = (d: Buffer) => {
    output = (output + d.toString()).slice(-16_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    let adminUrl = '';
    for (;;) {
      if (child.exitCode !== null) throw new Error(`envoy exited with ${child.exitCode} during startup:\n${output}`);
      if (Date.now() > deadline) throw new Error(`envoy not ready in time:\n${output}`);
      if (!adminUrl) {
        try {
          const address = readFileSync(adminPath, 'utf8').trim();
          if (address) adminUrl = `http://${address}`;
        } catch {
          // not written yet
        }
      }
      if (adminUrl && (await fetch(`${adminUrl}/ready`).then((r) => r.status === 200, () => false))) break;
      await sleep(50);
    }
    const listeners = (await (await fetch(`${adminUrl}/listeners?format=json`)).json()) as {
      listener_statuses?: Array<{ local_address?: { socket_address?: { port_value?: number } } }>;
    };
    const port = listeners.listener_statuses?.[0]?.local_address?.socket_address?.port_value;
    if (!port) throw new Error(`cannot read Envoy's listener port: ${JSON.stringify(listeners)}`);
    return { pid: child.pid ?? -1, port, adminUrl, output: () => output, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A counter from Envoy's admin /stats (0 when absent). */
export async function envoyCounter(adminUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/stats?filter=${encodeURIComponent(`^${name}$`)}`)).text();
  const match = /:\s*(\d+)/.exec(text);
  return match ? Number(match[1]) : 0;
}
