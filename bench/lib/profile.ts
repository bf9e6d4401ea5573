// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by area (keypool's files, grpc-js,
// protobufjs, Node's HTTP/2, logging, GC), idle time excluded.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly topFunctions: Array<{ name: string; where: string; selfPercent: number; selfMs: number }>;
  readonly byArea: Array<{ area: string; selfPercent: number; selfMs: number }>;
}

const AREAS: ReadonlyArray<readonly [RegExp, string]> = [
  [/node_modules\/@grpc\/grpc-js\//, 'grpc-js'],
  [/node_modules\/(protobufjs|@protobufjs|@grpc\/proto-loader)\//, 'protobufjs (decode/encode)'],
  [/node_modules\/(pino|sonic-boom|thread-stream)/, 'logging (pino)'],
  [/node_modules\/(prom-client|tdigest|bintrees)/, 'metrics (prom-client)'],
  [/node_modules\/ioredis|node_modules\/@ioredis|node_modules\/redis-parser|node_modules\/standard-as-callback/, 'ioredis'],
  [/node_modules\/@electric-sql\/|^wasm:\/\//, 'PGlite (incl. its WebAssembly)'],
  [/node_modules\//, 'other dependencies'],
  [/\/src\/adapters\/envoy\//, 'keypool: ext_proc adapter (src/adapters/envoy)'],
  [/\/src\/(core|snapshot)\/|\/src\/engine\.js/, 'keypool: engine + core'],
  [/\/src\/stores\//, 'keypool: stores (rate state, write buffer)'],
  [/\/src\/admin\//, 'keypool: admin + metrics'],
  [/\/src\//, 'keypool: other'],
  [/^node:internal\/http2|^node:http2/, 'node: http2'],
  [/^node:internal\/(streams|stream_base)|^node:stream/, 'node: streams'],
  [/^node:/, 'node: other internals'],
];

function areaOf(url: string, name: string): string {
  if (!url) {
    if (name === '(garbage collector)') return 'GC';
    if (name === '(program)') return '(program: native, outside JS)';
    // Generated protobufjs codecs (Type$decode, Type$encode, Type$fromObject, Type$toObject) have no URL.
    if (/\$(decode|encode|fromObject|toObject|verify)$/.test(name) || /^[A-Z][A-Za-z]+$/.test(name)) return 'protobufjs (decode/encode)';
    if (name.startsWith('RegExp:')) return '(regular expressions)';
    return '(native or builtin)';
  }
  for (const [pattern, area] of AREAS) if (pattern.test(url)) return area;
  return 'other';
}

export function summarizeProfile(file: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const functions = new Map<string, { name: string; where: string; us: number }>();
  const areas = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    total += us;
    const where = frame.url ? `${frame.url.replace(/^file:\/\/.*?\/(node_modules|src|dist)\//, '$1/')}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName}@${where}`;
    const entry = functions.get(key) ?? { name: frame.functionName || '(anonymous)', where, us: 0 };
    entry.us += us;
    functions.set(key, entry);
    const area = areaOf(frame.url, frame.functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((us / total) * 1000) / 10;
  return {
    totalMs: Math.round(total / 1000),
    topFunctions: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, 40)
      .map((f) => ({ name: f.name, where: f.where, selfPercent: pct(f.us), selfMs: Math.round(f.us / 1000) })),
    byArea: [...areas.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, selfPercent: pct(us), selfMs: Math.round(us / 1000) })),
  };
}

// `node dist/bench/lib/profile.js <file.cpuprofile>` prints the summary.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\/dist\//, 'dist/'))) {
  const file = process.argv[2];
  if (file) {
    const summary = summarizeProfile(file);
    console.table(summary.topFunctions.slice(0, 30));
    console.table(summary.byArea);
  }
}
