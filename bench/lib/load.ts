// Load shapes shared by the gRPC and HTTP benches. A `Fire` starts one request and calls `done` exactly once.
//
// constantRate() is an open-loop, wrk2-style generator that does not coordinate-omit: request i is due at
// start + i / rate whatever happened to earlier requests, and its latency is measured from that scheduled time,
// not from when it was actually sent. When the system under test (or a busy connection pool) falls behind, the
// wait before sending is counted in the latency instead of silently lowering the offered rate. To hit scheduled
// times with microsecond precision the generator polls with setImmediate (a busy loop): run it on its own CPU.
// How late the generator itself sent (its own lag, reported as sendLagUs) tells whether it kept up.

export type Fire = (done: (ok: boolean) => void) => void;

const nowUs = (): number => performance.now() * 1000;

export interface SequentialResult {
  readonly latUs: Float64Array;
  readonly errors: number;
}

/** One request at a time, `count` of them; latency of each in microseconds. */
export function sequential(fire: Fire, count: number): Promise<SequentialResult> {
  const latUs = new Float64Array(count);
  let errors = 0;
  let i = 0;
  return new Promise((resolve) => {
    const next = (): void => {
      if (i === count) {
        resolve({ latUs, errors });
        return;
      }
      const started = nowUs();
      fire((ok) => {
        latUs[i++] = nowUs() - started;
        if (!ok) errors++;
        next();
      });
    };
    next();
  });
}

export interface ClosedLoopResult {
  readonly completed: number;
  readonly errors: number;
  readonly elapsedMs: number;
  /** Completed requests per second. */
  readonly rate: number;
}

/** `concurrency` requests kept in flight for `durationMs` (saturation throughput). */
export function closedLoop(fire: Fire, concurrency: number, durationMs: number): Promise<ClosedLoopResult> {
  const started = performance.now();
  const deadline = started + durationMs;
  let completed = 0;
  let errors = 0;
  let inFlight = 0;
  return new Promise((resolve) => {
    const launch = (): void => {
      inFlight++;
      fire((ok) => {
        inFlight--;
        completed++;
        if (!ok) errors++;
        if (performance.now() < deadline) launch();
        else if (inFlight === 0) {
          const elapsedMs = performance.now() - started;
          resolve({ completed, errors, elapsedMs, rate: (completed / elapsedMs) * 1000 });
        }
      });
    };
    for (let c = 0; c < concurrency; c++) launch();
  });
}

export interface ConstantRateResult {
  readonly rate: number;
  readonly durationMs: number;
  readonly sent: number;
  readonly completed: number;
  readonly errors: number;
  /** Requests still unanswered when the drain timeout passed (counted as errors, not in the latencies). */
  readonly abandoned: number;
  /** Latency from each request's scheduled send time, in microseconds. */
  readonly latUs: Float64Array;
  /** How late the generator sent, p99, microseconds (its own lag; should stay far below the latencies). */
  readonly sendLagP99Us: number;
  /** Completions per second over the whole run. */
  readonly achievedRate: number;
}

/** `rate` requests per second for `durationMs`, open loop; see the file comment. */
export function constantRate(fire: Fire, rate: number, durationMs: number, drainTimeoutMs = 5_000): Promise<ConstantRateResult> {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const intervalUs = 1e6 / rate;
  const latUs = new Float64Array(total);
  const lagUs = new Float64Array(total);
  let recorded = 0;
  let sent = 0;
  let completed = 0;
  let errors = 0;
  const startUs = nowUs() + 2_000;
  return new Promise((resolve) => {
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(drainTimer);
      const elapsedMs = (nowUs() - startUs) / 1000;
      const lags = lagUs.subarray(0, sent).sort();
      resolve({
        rate,
        durationMs,
        sent,
        completed,
        errors: errors + (sent - completed),
        abandoned: sent - completed,
        latUs: latUs.slice(0, recorded),
        sendLagP99Us: lags.length ? lags[Math.min(lags.length - 1, Math.floor(lags.length * 0.99))]! : NaN,
        achievedRate: (completed / elapsedMs) * 1000,
      });
    };
    let drainTimer: NodeJS.Timeout | undefined;
    const tick = (): void => {
      const t = nowUs();
      while (sent < total) {
        const scheduledUs = startUs + sent * intervalUs;
        if (scheduledUs > t) break;
        lagUs[sent] = t - scheduledUs;
        sent++;
        fire((ok) => {
          if (finished) return;
          latUs[recorded++] = nowUs() - scheduledUs;
          completed++;
          if (!ok) errors++;
          if (completed === total) finish();
        });
      }
      if (sent < total) {
        const aheadUs = startUs + sent * intervalUs - nowUs();
        if (aheadUs > 3_000) setTimeout(tick, Math.floor(aheadUs / 1000) - 2);
        else setImmediate(tick);
      } else if (completed < total) {
        drainTimer = setTimeout(finish, drainTimeoutMs);
      }
    };
    setTimeout(tick, 1);
  });
}
