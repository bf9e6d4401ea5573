// Holds the current compiled snapshot and keeps it fresh:
// - the change feed (LISTEN keypool_config, fed by table triggers) schedules a reload, debounced (~100 ms) so a
//   burst of writes costs one reload;
// - a periodic full reload (default 30 s) is the safety net for notifications lost while the LISTEN connection
//   was down; every (re)connect of the listener also reloads;
// - optionally a config_version poll (cheap one-row read) for setups where notifications cannot arrive;
// - a reload that fails keeps the last good snapshot and reports the error through onError (the caller logs it);
// - swaps are atomic: current() returns either the old or the new snapshot, never a half-built one.
import type { Clock, SnapshotSource } from '../ports.js';
import type { SqlClient } from '../stores/sql-client.js';
import { compileSnapshot, type CompileDeps, type CompiledSnapshot, type CompileWarning } from './compile.js';
import type { ConfigData } from '../catalog/config-data.js';

export const CONFIG_CHANNEL = 'keypool_config';

/** Where the holder reads the catalog from (ConfigRepository satisfies it). */
export interface CatalogSource {
  loadConfigData(): Promise<ConfigData>;
  /** Needed only with pollIntervalMs. */
  configVersion?(): Promise<number>;
}

export interface ReloadInfo {
  readonly version: number;
  readonly configVersion: number;
  readonly durationMs: number;
  readonly reason: ReloadReason;
  readonly warnings: readonly CompileWarning[];
}

export type ReloadReason = 'initial' | 'notify' | 'listen' | 'interval' | 'poll' | 'manual';

/** Safety-net full reload when KEYPOOL_RELOAD_INTERVAL_MS is unset. */
export const DEFAULT_RELOAD_INTERVAL_MS = 30_000;

export interface SnapshotHolderOptions {
  readonly source: CatalogSource;
  /** LISTEN source for the change feed; null = no feed (periodic reload / poll only). */
  readonly feed: Pick<SqlClient, 'listen'> | null;
  readonly deps: CompileDeps;
  readonly clock: Clock;
  /** Safety-net full reload. Default DEFAULT_RELOAD_INTERVAL_MS; 0 disables. */
  readonly reloadIntervalMs?: number | undefined;
  /** Coalesces a burst of notifications into one reload. Default 100 ms. */
  readonly debounceMs?: number | undefined;
  /** Poll config_version this often and reload when it moved; default off (the change feed covers it). */
  readonly pollIntervalMs?: number | undefined;
  /** After each successful swap (log at debug; warnings at warn). */
  readonly onReload?: ((info: ReloadInfo) => void) | undefined;
  /** A reload, poll or subscription failed; the last good snapshot stays in place. */
  readonly onError?: ((error: unknown, reason: ReloadReason) => void) | undefined;
}

export class SnapshotHolder implements SnapshotSource {
  readonly #options: SnapshotHolderOptions;
  #snapshot: CompiledSnapshot | null = null;
  #version = 0;
  #lastReloadAtMs: number | null = null;
  #reloadFailures = 0;
  #lastError: unknown = null;
  #running: Promise<boolean> | null = null;
  #pending: ReloadReason | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #interval: NodeJS.Timeout | null = null;
  #poll: NodeJS.Timeout | null = null;
  #polling = false;
  #unlisten: (() => Promise<void>) | null = null;
  #started = false;
  #stopped = false;

  constructor(options: SnapshotHolderOptions) {
    this.#options = options;
  }

  /**
   * Subscribes to the change feed, loads the first snapshot (rejects if that fails: nothing to serve yet) and
   * starts the timers. Subscribing first means no change can slip between the first read and the LISTEN.
   */
  async start(): Promise<CompiledSnapshot> {
    if (this.#started) throw new Error('SnapshotHolder.start() called twice');
    this.#started = true;
    const { feed } = this.#options;
    if (feed) {
      this.#unlisten = await feed.listen(
        CONFIG_CHANNEL,
        () => this.#schedule('notify'),
        () => {
          // Reconnected (or first listen): notifications may have been missed meanwhile.
          if (this.#snapshot) this.#schedule('listen');
        },
      );
    }
    const ok = await this.reload('initial');
    if (!ok || !this.#snapshot) {
      await this.stop();
      throw this.#lastError instanceof Error ? this.#lastError : new Error('initial snapshot load failed');
    }
    const interval = this.#options.reloadIntervalMs ?? DEFAULT_RELOAD_INTERVAL_MS;
    if (interval > 0) {
      this.#interval = setInterval(() => void this.reload('interval'), interval);
      this.#interval.unref();
    }
    const poll = this.#options.pollIntervalMs;
    if (poll !== undefined && poll > 0 && this.#options.source.configVersion) {
      this.#poll = setInterval(() => void this.#checkVersion(), poll);
      this.#poll.unref();
    }
    return this.#snapshot;
  }

  current(): CompiledSnapshot | null {
    return this.#snapshot;
  }

  /** Number of successful swaps (the snapshot's version). */
  get version(): number {
    return this.#version;
  }

  get lastReloadAtMs(): number | null {
    return this.#lastReloadAtMs;
  }

  /** Failed reloads since start. */
  get reloadFailures(): number {
    return this.#reloadFailures;
  }

  /** The most recent reload failure, or null when the last reload succeeded. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /**
   * Loads and swaps now; resolves true on success. Concurrent calls share one load, and a call made while a load
   * runs triggers one more afterwards (its change may have committed after that load's read).
   */
  reload(reason: ReloadReason = 'manual'): Promise<boolean> {
    if (this.#stopped) return Promise.resolve(false);
    if (this.#running) {
      this.#pending = reason;
      return this.#running;
    }
    this.#running = this.#load(reason).finally(() => {
      this.#running = null;
      const next = this.#pending;
      this.#pending = null;
      if (next !== null && !this.#stopped) void this.reload(next);
    });
    return this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#interval) clearInterval(this.#interval);
    if (this.#poll) clearInterval(this.#poll);
    this.#debounce = this.#interval = this.#poll = null;
    const unlisten = this.#unlisten;
    this.#unlisten = null;
    if (unlisten) await unlisten().catch(() => undefined);
    await this.#running?.catch(() => undefined);
  }

  #schedule(reason: ReloadReason): void {
    if (this.#stopped || this.#debounce) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      void this.reload(reason);
    }, this.#options.debounceMs ?? 100);
    this.#debounce.unref();
  }

  async #load(reason: ReloadReason): Promise<boolean> {
    const { source, deps, clock } = this.#options;
    const startedAtMs = clock.nowMs();
    try {
      const data = await source.loadConfigData();
      const nowMs = clock.nowMs();
      const snapshot = compileSnapshot(data, deps, this.#version + 1, nowMs);
      if (this.#stopped) return false;
      this.#snapshot = snapshot;
      this.#version = snapshot.version;
      this.#lastReloadAtMs = nowMs;
      this.#lastError = null;
      this.#options.onReload?.({
        version: snapshot.version,
        configVersion: snapshot.configVersion,
        durationMs: nowMs - startedAtMs,
        reason,
        warnings: snapshot.warnings,
      });
      return true;
    } catch (error) {
      this.#reloadFailures++;
      this.#lastError = error;
      this.#options.onError?.(error, reason);
      return false;
    }
  }

  async #checkVersion(): Promise<void> {
    const probe = this.#options.source.configVersion;
    if (!probe || this.#polling || this.#running || !this.#snapshot) return;
    this.#polling = true;
    try {
      const version = await probe.call(this.#options.source);
      if (this.#snapshot && version !== this.#snapshot.configVersion) this.#schedule('poll');
    } catch (error) {
      this.#options.onError?.(error, 'poll');
    } finally {
      this.#polling = false;
    }
  }
}
