// A bench child for bench:scale, run fresh with --expose-gc so its memory is keypool's alone. Two modes:
//   snapshot  synthetic ConfigData (100k keys, 10k mappings, 1k accounts) compiled as the service compiles it:
//             RSS and heap before / after (the ConfigData dropped, only the snapshot kept, as SnapshotHolder does),
//             decision time over keys spread across the whole table
//   store     an embedded in-memory PGlite store (migrated like `keypool serve`), filled with SQL, then the full
//             reload path: repository.loadConfigData() + compileSnapshot, timed; RSS with the database included
// RSS is sampled after forced GCs: right after the first compile (V8 may still hold freed pages), after 200k
// decisions (steady state), after a reload, and the peak (maxRSS: ConfigData and snapshots alive at once).
// Prints one JSON line.
import { randomUUID } from 'node:crypto';
import type { RequestView } from '../../src/core/types.js';
import { compileSnapshot } from '../../src/snapshot/compile.js';
import { migrate } from '../../src/stores/migrate.js';
import { openPglite } from '../../src/stores/pglite-client.js';
import { encryptSecret } from '../../src/secrets/keyring.js';
import { NOW_MS, benchEngine, clientKey, configData, keyring, measure, pepper } from './synthetic.js';
import { ConfigRepository } from '../../src/catalog/repository.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

function memory(): { rssMb: number; heapUsedMb: number; externalMb: number } {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { rssMb: m.rss / 2 ** 20, heapUsedMb: m.heapUsed / 2 ** 20, externalMb: (m.external + m.arrayBuffers) / 2 ** 20 };
}

const ms = (startedNs: bigint) => Number(process.hrtime.bigint() - startedNs) / 1e6;

/**
 * Builds the ConfigData and compiles it in a frame of its own, so nothing but the snapshot survives the return (a
 * suspended async frame can keep a dead local reachable; measured: the 86 MB ConfigData stayed in the heap).
 */
function compileFresh(keys: number, mappings: number, accounts: number): { snapshot: ReturnType<typeof compileSnapshot>; compileMs: number } {
  const data = configData({ keys, mappings, accounts });
  const started = process.hrtime.bigint();
  const snapshot = compileSnapshot(data, { pepper, keyring }, 1, NOW_MS);
  return { snapshot, compileMs: ms(started) };
}

async function snapshotMode(keys: number, mappings: number, accounts: number): Promise<Record<string, unknown>> {
  // Everything the decision path loads is imported above: this is the process floor.
  const baseline = memory();
  const { snapshot, compileMs } = compileFresh(keys, mappings, accounts);
  const loaded = memory();
  const { engine, writes } = benchEngine(snapshot);
  // Keys spread over the whole table (odd indexes have no allowlist; even ones are presented from inside theirs).
  const views: RequestView[] = Array.from({ length: 4096 }, (_, i) => ({
    headers: { authorization: `Bearer ${clientKey((i * 7919) % keys)}`, 'content-type': 'application/json' },
    clientAddress: '10.1.2.3:5000',
    provider: 'openai',
  }));
  let denied = 0;
  const decide = await measure(200_000, async (i) => {
    const outcome = await engine.decide(views[i & 4095]!);
    if (outcome.ticket) engine.release(outcome.ticket);
    else denied++;
  });
  await writes.stop();
  if (denied) throw new Error(`setup is wrong: ${denied} denials`);
  const afterDecisions = memory();
  const peakBeforeReloadMb = process.resourceUsage().maxRSS / 1024;
  // A reload: the next snapshot is built while the current one still serves (SnapshotHolder swaps when it is done).
  const next = compileFresh(keys, mappings, accounts);
  const afterReload = memory();
  return {
    reloadCompileMs: next.compileMs,
    afterReload,
    peakBeforeReloadMb,
    mode: 'snapshot',
    keys,
    mappings,
    accounts,
    baseline,
    loaded,
    afterDecisions,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    compileMs,
    decideNs: { p50: decide.p50, p99: decide.p99 },
    warnings: snapshot.warnings.length,
  };
}

async function storeMode(keys: number, mappings: number, accounts: number): Promise<Record<string, unknown>> {
  const baseline = memory();
  const sql = await openPglite('memory://');
  try {
    await migrate(sql);
    const afterOpen = memory();
    const fillStarted = process.hrtime.bigint();
    await sql.query(
      `INSERT INTO api_key_priority_mappings (pattern, match_type, priority)
       SELECT CASE g % 4 WHEN 0 THEN 'kp_' || lpad(g::text, 10, '0') || repeat('A', 30)
                         WHEN 1 THEN 'kp_' || lpad(g::text, 6, '0')
                         ELSE 'Z' || g::text || 'Q' END,
              (ARRAY['exact', 'prefix', 'suffix', 'contains'])[g % 4 + 1], g % 8
       FROM generate_series(1, $1::int) AS g`,
      [mappings],
    );
    await sql.query(
      `INSERT INTO system_api_keys (name, tenant_id, key_prefix, key_hash, allowed_ips)
       SELECT 'key-' || g, 'tenant-' || (g % 50), 'kp_' || lpad(g::text, 8, '0'), encode(sha256(('k' || g)::bytea), 'hex'),
              CASE WHEN g % 2 = 0 THEN ARRAY['10.0.0.0/8', '2001:db8::/32'] ELSE '{}' END
       FROM generate_series(1, $1::int) AS g`,
      [keys],
    );
    for (let start = 0; start < accounts; start += 250) {
      const rows: unknown[] = [];
      const values: string[] = [];
      for (let i = start; i < Math.min(accounts, start + 250); i++) {
        const id = randomUUID();
        const secret = encryptSecret(keyring, id, `sk-bench-${i}-${'x'.repeat(40)}`);
        const n = rows.length;
        values.push(`($${n + 1}::uuid, (SELECT id FROM providers WHERE slug = 'openai'), $${n + 2}, $${n + 3}, $${n + 4}, '0000')`);
        rows.push(id, `acct-${i}`, secret.ciphertext, secret.keyVersion);
      }
      await sql.query(`INSERT INTO provider_accounts (id, provider_id, name, encrypted_key, key_version, key_last4) VALUES ${values.join(', ')}`, rows);
    }
    const fillMs = ms(fillStarted);
    const repository = new ConfigRepository(sql, { keyring, pepper });
    const loads: number[] = [];
    const compiles: number[] = [];
    let warnings = 0;
    let counts = {};
    for (let i = 0; i < 5; i++) {
      const started = process.hrtime.bigint();
      const data = await repository.loadConfigData();
      loads.push(ms(started));
      const compiled = process.hrtime.bigint();
      const snapshot = compileSnapshot(data, { pepper, keyring }, i + 1, Date.now());
      compiles.push(ms(compiled));
      warnings = snapshot.warnings.length;
      counts = { keys: data.keys.length, mappings: data.mappings.length, accounts: data.accounts.length };
    }
    const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
    return {
      mode: 'store',
      keys,
      mappings,
      accounts,
      counts,
      baseline,
      afterOpen,
      loaded: memory(),
      fillMs,
      loadConfigDataMs: median(loads),
      compileMs: median(compiles),
      reloadMs: median(loads.map((l, i) => l + compiles[i]!)),
      warnings,
    };
  } finally {
    await sql.close();
  }
}

const [mode, keys, mappings, accounts] = process.argv.slice(2);
const sizes = [Number(keys), Number(mappings), Number(accounts)] as const;
const result = mode === 'store' ? await storeMode(...sizes) : await snapshotMode(...sizes);
process.stdout.write(`${JSON.stringify(result)}\n`);
