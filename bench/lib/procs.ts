// Child processes for the benches: pinned to a CPU with taskset when the machine has one to spare, talking to the
// bench over Node IPC (request/answer by id), and always stopped (SIGTERM, then SIGKILL) when the bench ends.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';

let tasksetPath: string | null | undefined;

/** taskset's path, or null when it is missing or the machine has a single CPU (nothing to separate). */
export function taskset(): string | null {
  if (tasksetPath !== undefined) return tasksetPath;
  tasksetPath = null;
  if (cpus().length < 2 || process.env['BENCH_NO_PIN'] === '1') return null;
  for (const candidate of ['/usr/bin/taskset', '/bin/taskset']) {
    try {
      execFileSync(candidate, ['-p', String(process.pid)], { stdio: 'ignore' });
      tasksetPath = candidate;
      break;
    } catch {
      // not here
    }
  }
  return tasksetPath;
}

/** The CPU list a child should run on: `load` for load generators, `sut` for the system under test. */
export const CPUS = { load: '0', sut: '1', any: '0-1' } as const;

/** Pins this process (every thread) to `cpuList`; returns false when pinning is unavailable. */
export function pinSelf(cpuList: string): boolean {
  const bin = taskset();
  if (!bin) return false;
  execFileSync(bin, ['-a', '-p', '-c', cpuList, String(process.pid)], { stdio: 'ignore' });
  return true;
}

/** Wraps a command so it runs on `cpuList` (when pinning is available). */
export function pinned(cpuList: string | null, command: string, args: readonly string[]): [string, string[]] {
  const bin = cpuList === null ? null : taskset();
  return bin ? [bin, ['-c', cpuList!, command, ...args]] : [command, [...args]];
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of live) child.kill('SIGKILL');
    process.exit(130);
  });
}

/** Tracks a child spawned elsewhere so it is killed if the bench dies. */
export function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

export interface CpuTimes {
  /** Microseconds of user + system CPU. */
  readonly totalUs: number;
}

export interface NodeChild {
  readonly pid: number;
  readonly ready: Record<string, unknown>;
  /** Sends a request and resolves with the child's answer (same `id`). */
  ask<T = Record<string, unknown>>(type: string, payload?: Record<string, unknown>): Promise<T>;
  /** The child's own process.cpuUsage() total, in microseconds. */
  cpuUs(): Promise<number>;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts `node [nodeArgs] script [args]` on `cpuList` with an IPC channel, and waits for its first message
 * `{ type: 'ready', ... }`. The child answers `{ type, id }` requests (see bench/lib/child.ts).
 */
export async function startNodeChild(options: {
  readonly script: string;
  readonly args?: readonly string[];
  readonly nodeArgs?: readonly string[];
  readonly cpuList: string | null;
  readonly env?: NodeJS.ProcessEnv;
  readonly readyTimeoutMs?: number;
}): Promise<NodeChild> {
  const [command, args] = pinned(options.cpuList, process.execPath, [...(options.nodeArgs ?? []), options.script, ...(options.args ?? [])]);
  const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  track(child);
  let output = '';
  const append = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-32_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const waiting = new Map<number, (msg: Record<string, unknown>) => void>();
  let nextId = 1;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${options.script} not ready in time:\n${output}`)), options.readyTimeoutMs ?? 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${options.script} exited with ${code} before it was ready:\n${output}`));
    });
    child.on('message', (raw) => {
      const msg = raw as Record<string, unknown>;
      if (msg['type'] === 'ready') {
        clearTimeout(timer);
        resolve(msg);
        return;
      }
      const id = msg['id'];
      if (typeof id === 'number') {
        waiting.get(id)?.(msg);
        waiting.delete(id);
      }
    });
  });
  const ask = <T,>(type: string, payload: Record<string, unknown> = {}): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, (msg) => (msg['error'] ? reject(new Error(String(msg['error']))) : resolve(msg as T)));
      child.send({ ...payload, type, id });
    });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      child.send({ type: 'stop', id: 0 });
    } catch {
      child.kill('SIGTERM');
    }
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };
  return {
    pid: child.pid ?? -1,
    ready,
    ask,
    cpuUs: async () => (await ask<{ cpuUs: number }>('cpu')).cpuUs,
    output: () => output,
    stop,
  };
}

const CLOCK_TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU of any process (all threads) from /proc/<pid>/stat, in microseconds (10 ms resolution). */
export function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5) (utime, stime) are at 11 and 12 after the command name.
  return ((Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND) * 1e6;
}

/** Resident set size of a process in bytes. */
export function procRssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match?.[1] ? Number(match[1]) * 1024 : NaN;
}

/** A free TCP port on 127.0.0.1 (closed again before returning; bind it promptly). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
