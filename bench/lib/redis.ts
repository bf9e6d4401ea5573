// Redis for the Redis-mode benches. A private redis-server on a free loopback port when the binary is installed
// (so every command it sees is keypool's and can be counted exactly), else the shared one at 127.0.0.1:6379 (or
// BENCH_REDIS_URL). Commands per request come from INFO commandstats; which EVALSHA is which from MONITOR.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIT_LUA, OBSERVE_LUA } from '../../src/stores/redis-scripts.js';
import { freePort, pinned, sleep, track } from './procs.js';

export interface BenchRedis {
  readonly url: string;
  readonly port: number;
  /** True when this bench started the server (commands can be attributed to keypool). */
  readonly private: boolean;
  /** `calls` per command from INFO commandstats (commands run inside scripts included). */
  commandCalls(): Promise<Record<string, number>>;
  /** Runs `work` under MONITOR and counts EVALSHA by script (admit / observe) and other commands. */
  monitor(work: () => Promise<void>): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export const ADMIT_SHA = createHash('sha1').update(ADMIT_LUA).digest('hex');
export const OBSERVE_SHA = createHash('sha1').update(OBSERVE_LUA).digest('hex');

/** Sends one inline command and returns the raw reply text (enough for INFO and PING). */
function rawCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: string) => {
      text += chunk;
      const bulk = /^\$(\d+)\r\n/.exec(text);
      const done = bulk ? Buffer.byteLength(text) >= bulk[0].length + Number(bulk[1]) + 2 : text.endsWith('\r\n');
      if (done) {
        socket.end();
        resolve(text);
      }
    });
  });
}

export async function startBenchRedis(cpuList: string | null): Promise<BenchRedis> {
  const explicit = process.env['BENCH_REDIS_URL'];
  if (!explicit) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'keypool-bench-redis-'));
    const [command, args] = pinned(cpuList, 'redis-server', [
      '--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning',
    ]);
    let child: ChildProcess | null = null;
    try {
      child = spawn(command, args, { stdio: 'ignore' });
      track(child);
      const failed = new Promise<never>((_, reject) => child!.once('error', reject));
      for (let i = 0; ; i++) {
        const ok = await Promise.race([rawCommand(port, 'PING').then((r) => r.startsWith('+PONG'), () => false), failed]);
        if (ok) break;
        if (i > 100) throw new Error('redis-server did not answer PING');
        await sleep(50);
      }
      const running = child;
      return handle(`redis://127.0.0.1:${port}`, port, true, async () => {
        running.kill('SIGTERM');
        await new Promise((resolve) => (running.exitCode !== null ? resolve(null) : running.once('exit', resolve)));
        rmSync(dir, { recursive: true, force: true });
      });
    } catch (error) {
      child?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      console.log('[notice] redis-server not installed: using the shared Redis at 127.0.0.1:6379 (command counts include other clients)');
    }
  }
  const url = explicit ?? 'redis://127.0.0.1:6379';
  const port = Number(new URL(url).port || 6379);
  const pong = await rawCommand(port, 'PING').catch((error: unknown) => String(error));
  if (!pong.startsWith('+PONG')) throw new Error(`bench: no Redis answers at ${url} (${pong.trim()}); install redis-server or set BENCH_REDIS_URL`);
  return handle(url, port, false, async () => undefined);
}

function handle(url: string, port: number, isPrivate: boolean, stop: () => Promise<void>): BenchRedis {
  return {
    url,
    port,
    private: isPrivate,
    async commandCalls() {
      const text = await rawCommand(port, 'INFO commandstats');
      const calls: Record<string, number> = {};
      for (const match of text.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) calls[match[1]!] = Number(match[2]);
      return calls;
    },
    async monitor(work) {
      const counts: Record<string, number> = { admit: 0, observe: 0, other_evalsha: 0 };
      const socket = createConnection(port, '127.0.0.1');
      let buffered = '';
      socket.setEncoding('utf8');
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write('MONITOR\r\n');
      await new Promise<void>((resolve) => socket.once('data', () => resolve())); // +OK
      socket.on('data', (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split('\r\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          // Commands a script runs show up as `[0 lua]`: only count what clients sent (each one a round trip or
          // part of an auto-pipelined write).
          const m = /^\+\d+\.\d+ \[([^\]]*)\] "([^"]+)"(?: "([^"]*)")?/.exec(line);
          if (!m || m[1]!.includes('lua')) continue;
          const command = m[2]!.toLowerCase();
          if (command === 'evalsha') {
            const which = m[3] === ADMIT_SHA ? 'admit' : m[3] === OBSERVE_SHA ? 'observe' : 'other_evalsha';
            counts[which] = (counts[which] ?? 0) + 1;
          } else {
            counts[command] = (counts[command] ?? 0) + 1;
          }
        }
      });
      await work();
      await sleep(300);
      socket.destroy();
      return counts;
    },
    stop,
  };
}
