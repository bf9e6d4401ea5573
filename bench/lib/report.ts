// Shared by every bench: percentiles, targets (met/missed with the figure), a markdown table printer, and the
// results file bench/results/<name>.json.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the first directory above this module (bench/lib or dist/bench/lib) with keypool's package.json. */
export const REPO_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'keypool') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('bench: keypool package.json not found');
    dir = parent;
  }
})();

export const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');

export interface Percentiles {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

/** Percentiles of `samples` (any unit; sorted in place). */
export function percentiles(samples: Float64Array): Percentiles {
  samples.sort();
  const n = samples.length;
  const at = (p: number) => (n === 0 ? NaN : samples[Math.min(n - 1, Math.floor((p / 100) * n))]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += samples[i]!;
  return { count: n, p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: n ? samples[n - 1]! : NaN, mean: n ? sum / n : NaN };
}

export interface Target {
  readonly target: string;
  /** The measured figure, human readable, with its unit. */
  readonly figure: string;
  readonly met: boolean | null;
  readonly note?: string;
}

export function target(name: string, value: number, limit: number, unit: string, direction: '<=' | '>=', note?: string): Target {
  const met = Number.isFinite(value) ? (direction === '<=' ? value <= limit : value >= limit) : null;
  return { target: `${name} ${direction} ${formatNumber(limit)} ${unit}`, figure: `${formatNumber(value)} ${unit}`, met, ...(note ? { note } : {}) };
}

export function printTargets(targets: readonly Target[]): void {
  console.log('\nTargets:');
  for (const t of targets) {
    const verdict = t.met === null ? 'n/a   ' : t.met ? 'MET   ' : 'MISSED';
    console.log(`  [${verdict}] ${t.target}: ${t.figure}${t.note ? ` (${t.note})` : ''}`);
  }
}

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString('en-US');
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A markdown table (copy-paste ready for the README). */
export function markdownTable(columns: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const cell = (v: string | number) => (typeof v === 'number' ? formatNumber(v) : v);
  const lines = [`| ${columns.join(' | ')} |`, `| ${columns.map(() => '---').join(' | ')} |`];
  for (const row of rows) lines.push(`| ${row.map(cell).join(' | ')} |`);
  return lines.join('\n');
}

export function environment(): Record<string, unknown> {
  return { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', at: new Date().toISOString() };
}

export function writeResults(name: string, results: Record<string, unknown>): string {
  const out = join(RESULTS_DIR, `${name}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ name, ...environment(), ...results }, null, 2)}\n`);
  console.log(`\nwritten ${out}`);
  return out;
}

export const round1 = (value: number): number => Math.round(value * 10) / 10;
export const round2 = (value: number): number => Math.round(value * 100) / 100;
