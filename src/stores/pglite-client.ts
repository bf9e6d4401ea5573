// SqlClient over an in-process PGlite (embedded PostgreSQL in WASM): a data directory on disk, or memory://.
//
// PGlite is a single backend session. This process's own statements and those of socket clients (pglite-share.ts)
// must not interleave inside one another's transactions or extended-protocol batches, so every use of the
// backend takes the SessionGate: a local query or transaction holds it for its duration, a socket client from its
// first message until it is back at an idle point outside a transaction.
import { PGlite } from '@electric-sql/pglite';
import { parseInt8, type SqlClient } from './sql-client.js';

/** FIFO async mutex over the PGlite session. */
export class SessionGate {
  #held = false;
  readonly #waiters: Array<() => void> = [];

  /** Resolves with a release function once the gate is ours. */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = (): void => {
        this.#held = true;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.#handOver();
        });
      };
      if (this.#held) this.#waiters.push(grant);
      else grant();
    });
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  #handOver(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#held = false;
  }
}

type Listener = (payload: string) => void;

/**
 * PostgreSQL settings for the embedded database. shared_buffers: PostgreSQL's default of 128 MB lives in PGlite's
 * WebAssembly memory, which never shrinks; keypool's config tables are a few MB even at 100k keys and are read into
 * the snapshot once per reload, so 16 MB of page cache is plenty (measured: idle RSS of `npm start` and of
 * DATABASE_URL=memory:// in README "Performance").
 */
const PGLITE_CONF = ['shared_buffers=16MB'];

/** Opens PGlite at `dataDir` (a directory path, or 'memory://'). */
export async function openPglite(dataDir: string): Promise<PgliteClient> {
  const db = await PGlite.create({
    dataDir,
    // Same conversions as the PostgreSQL client: int8 as number when exact.
    parsers: { 20: (value: string) => parseInt8(value) },
    postgresqlconf: PGLITE_CONF,
  });
  return new PgliteClient(db);
}

export class PgliteClient implements SqlClient {
  readonly kind = 'pglite' as const;
  /** The database; use only through the gate (pglite-share.ts does). */
  readonly db: PGlite;
  readonly gate = new SessionGate();
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #unlistenDb = new Map<string, () => Promise<void>>();
  /** Resolves once LISTEN ran for the channel (concurrent listen() calls wait for the same one). */
  readonly #listening = new Map<string, Promise<void>>();
  readonly #closeHooks: Array<() => Promise<void>> = [];
  #closed = false;

  constructor(db: PGlite) {
    this.db = db;
  }

  async query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    const result = await this.gate.run(() => this.db.query<T>(text, params as unknown[]));
    return result.rows;
  }

  async exec(multiStatementSql: string): Promise<void> {
    await this.gate.run(() => this.db.exec(multiStatementSql));
  }

  async transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return this.gate.run(() => this.db.transaction((tx) => fn(new PgliteTxClient(tx, this))));
  }

  async listen(channel: string, onNotify: Listener, onListen?: () => void): Promise<() => Promise<void>> {
    const name = channel.toLowerCase();
    let set = this.#listeners.get(name);
    if (!set) {
      set = new Set();
      this.#listeners.set(name, set);
      const listening = this.gate.run(() => this.db.listen(name, (payload) => this.deliverNotification(name, payload)));
      this.#unlistenDb.set(name, () => listening.then((unlisten) => unlisten()));
      this.#listening.set(name, listening.then(() => undefined));
    }
    set.add(onNotify);
    await this.#listening.get(name);
    onListen?.();
    return async () => {
      const current = this.#listeners.get(name);
      if (!current?.delete(onNotify) || current.size > 0) return;
      this.#listeners.delete(name);
      this.#listening.delete(name);
      const unlisten = this.#unlistenDb.get(name);
      this.#unlistenDb.delete(name);
      if (unlisten && !this.#closed) await this.gate.run(unlisten).catch(() => undefined);
    };
  }

  /**
   * Hands a notification to this process's listeners. PGlite itself reports only notifications that arrive on
   * its own API calls; the socket share forwards those committed by socket clients through here.
   */
  deliverNotification(channel: string, payload: string): void {
    const set = this.#listeners.get(channel.toLowerCase());
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch {
        // A listener's failure must not stop the others; listeners report their own errors.
      }
    }
  }

  /** Runs before the database closes (the socket share stops first). */
  onClose(hook: () => Promise<void>): void {
    this.#closeHooks.push(hook);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const hook of this.#closeHooks.splice(0).reverse()) await hook().catch(() => undefined);
    this.#listeners.clear();
    await this.gate.run(() => this.db.close());
  }
}

type PgliteTransaction = Parameters<Parameters<PGlite['transaction']>[0]>[0];

class PgliteTxClient implements SqlClient {
  readonly kind = 'pglite' as const;

  constructor(
    private readonly tx: PgliteTransaction,
    private readonly parent: PgliteClient,
  ) {}

  async query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    return (await this.tx.query<T>(text, params as unknown[])).rows;
  }

  async exec(multiStatementSql: string): Promise<void> {
    await this.tx.exec(multiStatementSql);
  }

  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return fn(this);
  }

  listen(channel: string, onNotify: Listener, onListen?: () => void): Promise<() => Promise<void>> {
    return this.parent.listen(channel, onNotify, onListen);
  }

  async close(): Promise<void> {
    throw new Error('close() called on a transaction client');
  }
}
