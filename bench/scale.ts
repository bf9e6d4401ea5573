// bench:scale — memory and decision time at size, and reload time. A benchmark, never part of `npm test`.
// Each measurement runs in a fresh child process (bench/lib/scale-child.ts, --expose-gc) so its RSS is its own:
//   snapshot 100k keys / 10k mappings / 1k accounts: RSS and heap with the compiled snapshot loaded (what a replica
//            on PostgreSQL holds), decision time over keys spread across the table, compile (reload) time
//   snapshot 10 keys / 10k mappings / 2 accounts: compile time of a 10k-mapping snapshot
//   store    embedded in-memory PGlite with 10k mappings, and with 100k keys / 10k mappings / 1k accounts: the full
//            reload (loadConfigData + compile) and RSS with the embedded database in the process
// Prints a table and writes bench/results/scale.json.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { markdownTable, printTargets, round1, target, writeResults } from './lib/report.js';

const CHILD = fileURLToPath(new URL('./lib/scale-child.js', import.meta.url));

async function child(mode: 'snapshot' | 'store', keys: number, mappings: number, accounts: number): Promise<Record<string, any>> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', CHILD, mode, String(keys), String(mappings), String(accounts)], {
    env: { ...process.env, DATABASE_URL: '', REDIS_URL: '' },
    maxBuffer: 1 << 20,
    timeout: 170_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, any>;
}

async function main(): Promise<void> {
  const big = await child('snapshot', 100_000, 10_000, 1_000);
  console.log(`snapshot 100k/10k/1k: RSS ${round1(big.afterDecisions.rssMb)} MB steady, ${round1(big.peakRssMb)} MB peak (empty process ${round1(big.baseline.rssMb)} MB), compile ${round1(big.compileMs)} ms`);
  const reload10k = await child('snapshot', 10, 10_000, 2);
  const store10k = await child('store', 10, 10_000, 2);
  console.log(`embedded store 10k mappings: loadConfigData ${round1(store10k.loadConfigDataMs)} ms + compile ${round1(store10k.compileMs)} ms`);
  const storeBig = await child('store', 100_000, 10_000, 1_000);
  console.log(`embedded store 100k/10k/1k: loadConfigData ${round1(storeBig.loadConfigDataMs)} ms + compile ${round1(storeBig.compileMs)} ms`);

  const rows = [
    [
      'compiled snapshot, 100k keys / 10k mappings / 1k accounts',
      round1(big.afterDecisions.rssMb),
      round1(big.peakRssMb),
      round1(big.baseline.rssMb),
      round1(big.afterDecisions.heapUsedMb - big.baseline.heapUsedMb),
      `${round1(big.decideNs.p50 / 1000)} / ${round1(big.decideNs.p99 / 1000)}`,
      `compile ${round1(big.compileMs)}`,
    ],
    ['compiled snapshot, 10 keys / 10k mappings / 2 accounts', '-', '-', '-', '-', '-', `compile ${round1(reload10k.compileMs)}`],
    [
      'embedded store (in-memory PGlite) + snapshot, 10k mappings',
      round1(store10k.loaded.rssMb),
      '-',
      round1(store10k.baseline.rssMb),
      '-',
      '-',
      `load ${round1(store10k.loadConfigDataMs)} + compile ${round1(store10k.compileMs)} = ${round1(store10k.reloadMs)}`,
    ],
    [
      'embedded store (in-memory PGlite) + snapshot, 100k keys / 10k mappings / 1k accounts',
      round1(storeBig.loaded.rssMb),
      '-',
      round1(storeBig.baseline.rssMb),
      '-',
      '-',
      `load ${round1(storeBig.loadConfigDataMs)} + compile ${round1(storeBig.compileMs)} = ${round1(storeBig.reloadMs)}`,
    ],
  ];
  const table = markdownTable(
    ['what is loaded', 'RSS MB (steady)', 'RSS MB peak (load + reload)', 'RSS MB of the empty process', 'heap MB for the snapshot', 'decision p50 / p99 us', 'reload ms'],
    rows,
  );
  console.log(`\n${table}`);
  const targets = [
    target(
      'RSS with 100k keys / 10k mappings / 1k accounts (steady, snapshot in a Node process)',
      big.afterDecisions.rssMb,
      200,
      'MB',
      '<=',
      `peak ${round1(big.peakRssMb)} MB while a snapshot is compiled next to the live one; with the embedded PGlite store in the same process ${round1(storeBig.loaded.rssMb)} MB`,
    ),
  ];
  printTargets(targets);
  writeResults('scale', { snapshot100k: big, snapshot10kMappings: reload10k, store10kMappings: store10k, store100k: storeBig, table, targets });
}

await main();
