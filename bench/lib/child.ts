// The child side of bench/lib/procs.ts: announce readiness, answer `cpu` and custom requests, stop on `stop`.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

export type Handler = (msg: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>;

export function serveParent(ready: Record<string, unknown>, handlers: Record<string, Handler>, stop: () => Promise<void>): void {
  if (!process.send) throw new Error('bench child: started without an IPC channel');
  const send = (msg: Record<string, unknown>) => process.send!(msg);
  process.on('message', (raw) => {
    const msg = raw as Record<string, unknown>;
    const id = msg['id'];
    const type = String(msg['type']);
    if (type === 'stop') {
      void stop()
        .catch((error: unknown) => console.error('bench child: stop failed', error))
        .finally(() => process.exit(0));
      return;
    }
    if (type === 'cpu') {
      const usage = process.cpuUsage();
      send({ id, cpuUs: usage.user + usage.system });
      return;
    }
    const handler = handlers[type] ?? BUILT_IN[type];
    if (!handler) {
      send({ id, error: `unknown request ${type}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(msg))
      .then((answer) => send({ ...answer, id }))
      .catch((error: unknown) => send({ id, error: String((error as Error)?.stack ?? error) }));
  });
  // The parent died: do not linger.
  process.on('disconnect', () => {
    void stop().finally(() => process.exit(0));
  });
  send({ type: 'ready', ...ready });
}

/**
 * V8's CPU profiler (what `node --cpu-prof` runs) over a window the parent chooses, so start-up (PGlite boot,
 * migrations, seeding) stays out of the profile. `profileStop` writes a .cpuprofile to msg.file.
 */
let profiler: Session | null = null;
let loopMonitor: IntervalHistogram | null = null;

const BUILT_IN: Record<string, Handler> = {
  /** Event-loop delay since the previous call (the first call starts the monitor): how long the loop was blocked. */
  loopDelay() {
    if (loopMonitor === null) {
      loopMonitor = monitorEventLoopDelay({ resolution: 5 });
      loopMonitor.enable();
      return { started: true };
    }
    const answer = { p50Ms: loopMonitor.percentile(50) / 1e6, p99Ms: loopMonitor.percentile(99) / 1e6, maxMs: loopMonitor.max / 1e6 };
    loopMonitor.reset();
    return answer;
  },
  async profileStart() {
    profiler = new Session();
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
    await profiler.post('Profiler.start');
    return {};
  },
  /** Allocation sampling (every ~32 KB), garbage included: where per-request allocations come from. */
  async heapProfileStart() {
    profiler = new Session();
    profiler.connect();
    await profiler.post('HeapProfiler.enable');
    await profiler.post('HeapProfiler.startSampling', {
      samplingInterval: 32_768,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as never);
    return {};
  },
  async heapProfileStop(msg) {
    if (!profiler) throw new Error('heap profiler not started');
    const { profile } = await profiler.post('HeapProfiler.stopSampling');
    profiler.disconnect();
    profiler = null;
    writeFileSync(String(msg['file']), JSON.stringify(profile));
    return { file: msg['file'] };
  },
  async profileStop(msg) {
    if (!profiler) throw new Error('profiler not started');
    const { profile } = await profiler.post('Profiler.stop');
    profiler.disconnect();
    profiler = null;
    writeFileSync(String(msg['file']), JSON.stringify(profile));
    return { file: msg['file'] };
  },
};
