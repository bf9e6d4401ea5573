// The keypool plugin as Kong's JS plugin server runs it (kong/plugins/keypool.cjs loads this file lazily).
// Every PDK call is a socket round trip to Kong, so each phase makes as few as it can (counts in README).
import {
  DECISION_KEY,
  REDACTED,
  UNAVAILABLE_RECORD,
  clientAddressFromKong,
  clientCredentialRedactions,
  headerBagFromKong,
  parseKongConfig,
  recordFromOutcome,
  requestBodyFromKong,
  requestViewFromKong,
  statusFromKong,
  ticketFromRecord,
  upstreamMutation,
  type ConfigResult,
  type KongRecord,
} from './codec.js';
import type { HeaderBag, RequestView } from '../../core/types.js';
import type { DecisionEngine, RequestOutcome, Ticket } from '../../ports.js';
import { LazyAbort } from '../lazy-abort.js';
import { LeaseKeeper, type HeldTicket } from '../lease-keeper.js';

/**
 * The slice of kong-pdk's `kong` object this plugin uses. The PDK is a proxy that turns any property path into
 * an RPC call (`kong.request.get_headers()` -> "kong.request.get_headers"), so these are the exact Lua names.
 */
export interface KongPdk {
  readonly request: {
    get_headers(): Promise<unknown>;
    /** Only for pools whose decisions read the path (withRequestInput). */
    get_path_with_query(): Promise<unknown>;
    get_raw_body(): Promise<unknown>;
  };
  readonly client: { get_forwarded_ip(): Promise<unknown> };
  readonly service: {
    readonly request: {
      clear_header(name: string): Promise<unknown>;
      set_headers(headers: Readonly<Record<string, string | readonly string[]>>): Promise<unknown>;
    };
  };
  readonly response: {
    get_source(): Promise<unknown>;
    get_status(): Promise<unknown>;
    get_headers(): Promise<unknown>;
  };
  readonly ctx: {
    readonly shared: { get(key: string): Promise<unknown>; set(key: string, value: unknown): Promise<unknown> };
  };
  readonly log: {
    set_serialize_value(key: string, value: unknown): Promise<unknown>;
    err(...message: unknown[]): Promise<unknown>;
  };
}

/** What src/runtime.ts openRuntime() resolves to. */
export interface KeypoolRuntime {
  readonly engine: DecisionEngine;
  stop(): Promise<void>;
}

export type RuntimeFactory = () => Promise<KeypoolRuntime>;

/** A decision that takes longer is answered 503 keypool_unavailable (Kong would otherwise hold the request). */
const DEFAULT_DECIDE_DEADLINE_MS = 2_000;
/** A request waits this long for the runtime to open (first request; PGlite boots in seconds), then gets 503. */
const OPEN_WAIT_MS = 5_000;
/** After the runtime failed to open, requests fail fast for this long before the next attempt. */
const REOPEN_BACKOFF_MS = 1_000;
/** kong.log.err about the same failing runtime at most this often. */
const ERROR_LOG_INTERVAL_MS = 5_000;
/**
 * Longest a Kong request keeps its slot renewed between access and log. Kong runs the log phase for every request it
 * proxied, but nothing tells the plugin server when one never gets there; past this (longer than any LLM response
 * behind Kong's proxy timeouts) the renewals stop and the lease runs out by itself.
 */
const KONG_MAX_HOLD_MS = 3_600_000;
/** Tickets between access and log, by lease id (module scope: plugin instances come and go). */
const heldTickets = new Map<string, HeldTicket>();

/** Keeps an allowed request's slot renewed until its log phase (or KONG_MAX_HOLD_MS). */
function holdUntilLog(engine: DecisionEngine, ticket: Ticket): void {
  const admittedAtMs = Date.now();
  const held: HeldTicket = {
    ticket,
    isAlive: () => Date.now() - admittedAtMs < KONG_MAX_HOLD_MS,
    onDead: () => heldTickets.delete(ticket.leaseId),
  };
  heldTickets.set(ticket.leaseId, held);
  LeaseKeeper.of(engine).hold(held);
}

function stopHolding(engine: DecisionEngine, ticket: Ticket): void {
  const held = heldTickets.get(ticket.leaseId);
  if (held === undefined) return;
  heldTickets.delete(ticket.leaseId);
  LeaseKeeper.of(engine).drop(held);
}

/** The default factory: the runtime built next to this file (dist/src/runtime.js), configured from the environment. */
async function openDistRuntime(): Promise<KeypoolRuntime> {
  // A computed specifier: resolved at run time only, so loading this module touches nothing.
  const specifier = new URL('../../runtime.js', import.meta.url).href;
  const mod = (await import(specifier)) as { openRuntime?: (options?: object) => Promise<KeypoolRuntime> };
  if (typeof mod.openRuntime !== 'function') throw new Error(`${specifier} does not export openRuntime`);
  // Inside Kong a store nobody configured would be a throwaway one in the worker's cwd (valid keys unknown, secrets
  // generated next to nginx): refused, so every request is answered 503 with an error-level log line instead.
  return mod.openRuntime({ requireConfiguredStore: true });
}

export interface KongPluginOptions {
  /** Opens the runtime on the first request (default: dist/src/runtime.js from the environment). */
  readonly openRuntime?: RuntimeFactory;
  /** Longest a decision may take before the request is answered 503 keypool_unavailable. */
  readonly decideDeadlineMs?: number;
}

export interface KongPlugin {
  /** The class the plugin entry (kong/plugins/keypool.cjs) instantiates per Kong plugin configuration. */
  readonly Plugin: new (rawConfig: unknown) => KeypoolKongPluginInstance;
  /** Stops the runtime, if one was opened; the next request opens a new one. */
  stopRuntime(): Promise<void>;
}

export interface KeypoolKongPluginInstance {
  access(kong: KongPdk): Promise<void>;
  log(kong: KongPdk): Promise<void>;
}

/**
 * One keypool for one plugin-server process: the runtime (opened on first use, shared by every plugin instance) and
 * the plugin class bound to it. Kong's plugin server recreates plugin instances after 60 s idle, so the state lives
 * here, not in the instances; the shipped entry uses the module's default (KeypoolKongPlugin).
 */
export function createKongPlugin(options: KongPluginOptions = {}): KongPlugin {
  const runtimes = new RuntimeSlot(options.openRuntime ?? openDistRuntime, options.decideDeadlineMs ?? DEFAULT_DECIDE_DEADLINE_MS);
  class Plugin extends KongPluginInstance {
    constructor(rawConfig: unknown) {
      super(rawConfig, runtimes);
    }
  }
  return { Plugin, stopRuntime: () => runtimes.stop() };
}

/** The runtime of one plugin-server process: opened on first use, reopened after a failure (with back-off). */
class RuntimeSlot {
  private runtime: Promise<KeypoolRuntime> | null = null;
  private openedRuntime: KeypoolRuntime | null = null;
  private openFailedAtMs = -Infinity;
  private lastErrorLogAtMs = -Infinity;

  constructor(
    private readonly open: RuntimeFactory,
    private readonly decideDeadlineMs: number,
  ) {}

  /** The engine, if the runtime is open (the log phase never opens one). */
  get openedEngine(): DecisionEngine | null {
    return this.openedRuntime?.engine ?? null;
  }

  async stop(): Promise<void> {
    const current = this.runtime;
    this.runtime = null;
    this.openedRuntime = null;
    if (current) await current.then((opened) => opened.stop(), () => undefined);
  }

  /** The engine; opens the runtime on first use. A request waits for the opening at most OPEN_WAIT_MS. */
  engineOrOpen(): Promise<DecisionEngine> {
    if (this.openedRuntime) return Promise.resolve(this.openedRuntime.engine);
    if (!this.runtime) {
      if (Date.now() - this.openFailedAtMs < REOPEN_BACKOFF_MS) {
        return Promise.reject(new Error('keypool runtime failed to open recently; retrying shortly'));
      }
      const opening = this.open();
      this.runtime = opening;
      opening.then(
        (opened) => {
          if (this.runtime === opening) this.openedRuntime = opened;
        },
        () => {
          if (this.runtime === opening) {
            this.runtime = null;
            this.openFailedAtMs = Date.now();
          }
        },
      );
    }
    // The opening goes on in the background past a request's deadline; later requests find it open.
    return within(this.runtime, OPEN_WAIT_MS, 'opening the keypool runtime').then((opened) => opened.engine);
  }

  /**
   * Resolves like engine.decide, or rejects after the deadline; a late allow's slot is released, not leaked. A
   * decision that waits in the admission queue (queue.max_wait_ms) gets its wait on top of the deadline: Kong's access
   * phase simply waits. At the deadline the wait is abandoned (the signal takes it out of the queue).
   */
  decideWithin(engine: DecisionEngine, view: RequestView): Promise<RequestOutcome> {
    const deadlineMs = this.decideDeadlineMs;
    return new Promise<RequestOutcome>((resolve, reject) => {
      let settled = false;
      const expire = (): void => {
        settled = true;
        waiting.abort();
        reject(new Error(`the keypool decision exceeded its deadline (${deadlineMs} ms plus any queue wait)`));
      };
      let timer = setTimeout(expire, deadlineMs);
      // The decision's options: past the deadline its wait in the admission queue is given up.
      const waiting = new LazyAbort((maxWaitMs) => {
        if (settled) return;
        clearTimeout(timer);
        timer = setTimeout(expire, maxWaitMs + deadlineMs);
      });
      engine.decide(view, waiting).then(
        (outcome) => {
          if (settled) {
            if (outcome.ticket) engine.abandon(outcome.ticket);
            return;
          }
          settled = true;
          clearTimeout(timer);
          resolve(outcome);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  async logErrorRarely(kong: KongPdk, error: unknown): Promise<void> {
    const nowMs = Date.now();
    if (nowMs - this.lastErrorLogAtMs < ERROR_LOG_INTERVAL_MS) return;
    this.lastErrorLogAtMs = nowMs;
    const message = error instanceof Error ? error.message : String(error);
    await kong.log.err(`keypool: answering 503 keypool_unavailable: ${message}`).catch(() => undefined);
  }
}

/** `work`, or a rejection after `ms`. */
function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} exceeded ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/**
 * One instance per Kong plugin configuration (route or service). Holds only its parsed config; everything
 * stateful lives at module scope.
 */
class KongPluginInstance implements KeypoolKongPluginInstance {
  private readonly config: ConfigResult;

  constructor(
    rawConfig: unknown,
    private readonly runtimes: RuntimeSlot,
  ) {
    this.config = parseKongConfig(rawConfig);
  }

  /**
   * Decides the request and records the outcome in kong.ctx.shared; never answers the client itself
   * (kong.response.exit from JS leaks in kong-pdk 0.6.0): the bundled Lua guard does. Any failure records
   * 503 keypool_unavailable; if even that cannot be recorded, the guard finds nothing and answers 503.
   */
  async access(kong: KongPdk): Promise<void> {
    let engine: DecisionEngine | null = null;
    let ticket: Ticket | null = null;
    let recorded = false;
    let headers: HeaderBag | null = null;
    const redacted = new Set<string>();
    try {
      // Always make this call first: a phase with no PDK call at all leaks an event in kong-pdk 0.6.0.
      headers = headerBagFromKong(await kong.request.get_headers());
      // Before anything can fail or deny: the client's credentials never reach Kong's serialized logs.
      await redact(kong, clientCredentialRedactions(headers), redacted);
      const clientAddress = clientAddressFromKong(await kong.client.get_forwarded_ip());
      if (!this.config.ok) throw new Error(this.config.error);
      engine = await this.runtimes.engineOrOpen();
      const view = await withRequestInput(kong, engine, requestViewFromKong(this.config.config, headers, clientAddress));
      const outcome = await this.runtimes.decideWithin(engine, view);
      ticket = outcome.ticket;
      if (outcome.decision.kind === 'allow') {
        const mutation = upstreamMutation(outcome.decision.removeHeaders, outcome.decision.setHeaders);
        for (const name of mutation.clear) await kong.service.request.clear_header(name);
        if (Object.keys(mutation.set).length > 0) await kong.service.request.set_headers(mutation.set);
        await redact(kong, mutation.redact, redacted);
      }
      // Recorded last: a failure anywhere above leaves no allow behind, so the request cannot pass half-done.
      await record(kong, recordFromOutcome(outcome));
      recorded = true;
      if (ticket) holdUntilLog(engine, ticket);
    } catch (error) {
      // Answered 503 below: the request never reaches the provider.
      if (engine && ticket && !recorded) engine.abandon(ticket);
      await record(kong, UNAVAILABLE_RECORD).catch(() => undefined);
      // Those not hidden yet; every credential header name when the headers could not even be read.
      await redact(kong, clientCredentialRedactions(headers), redacted).catch(() => undefined);
      await this.runtimes.logErrorRarely(kong, error);
    }
  }

  /**
   * Feeds the upstream answer back and frees the slot. Runs from a Kong timer after the response, so it
   * never delays the client; no `response` phase (defining one makes Kong buffer whole bodies).
   */
  async log(kong: KongPdk): Promise<void> {
    const ticket = ticketFromRecord(await kong.ctx.shared.get(DECISION_KEY));
    const engine = this.runtimes.openedEngine;
    if (!ticket || !engine) return;
    stopHolding(engine, ticket);
    let released = false;
    try {
      // kong.response.get_source(): 'service' when the provider answered; 'exit' (another plugin) or 'error' (Kong's
      // own 502/504 for an unreachable or slow upstream) say nothing about the credential: the engine's one rule for
      // gateway replies (ports.ts ResponseOrigin) keeps them out of the account's health.
      const origin = (await kong.response.get_source()) === 'service' ? 'upstream' : 'gateway';
      const status = statusFromKong(await kong.response.get_status());
      if (status === null) return;
      const headers = origin === 'upstream' ? headerBagFromKong(await kong.response.get_headers()) : {};
      released = true;
      // The log phase runs after the client has its answer: nothing to hold, so the commit is not awaited.
      void engine.observe(ticket, status, headers, { origin, release: true });
    } finally {
      if (!released) engine.release(ticket);
    }
  }
}

/** kong.log.set_serialize_value(key, REDACTED) for each key not hidden yet (one PDK call each). */
async function redact(kong: KongPdk, keys: readonly string[], done: Set<string>): Promise<void> {
  for (const key of keys) {
    if (done.has(key)) continue;
    await kong.log.set_serialize_value(key, REDACTED);
    done.add(key);
  }
}

function record(kong: KongPdk, value: KongRecord): Promise<unknown> {
  return kong.ctx.shared.set(DECISION_KEY, value);
}

/** The module's keypool: what the shipped plugin entry (kong/plugins/keypool.cjs) uses. */
const processPlugin = createKongPlugin();
/** The plugin class of the module's keypool (one runtime per plugin-server process). */
export const KeypoolKongPlugin = processPlugin.Plugin;
/** Stops the module's runtime, if one was opened. */
export const stopRuntime = processPlugin.stopRuntime;

/**
 * The request's path with its query, for pools whose decisions read it (engine.needsPath: the model, an Azure
 * deployment, a credential in the query), and its raw body, when the decision needs it (engine.needsBody: the model
 * when the path does not name it, the token estimate): one or two more PDK calls, only on such routes; every other
 * route stays headers-only. Kong keeps
 * a body in memory only up to nginx's client_body_buffer_size (default 8 KiB: raise it on these routes, e.g.
 * nginx_http_client_body_buffer_size = 1m); a larger one is not readable here, so it counts as over the limit and the
 * engine refuses it (400 invalid_request) rather than forwarding it unrouted.
 */
async function withRequestInput(kong: KongPdk, engine: DecisionEngine, view: RequestView): Promise<RequestView> {
  let withPath = view;
  if (engine.needsPath?.(view) ?? false) {
    const path = await kong.request.get_path_with_query();
    if (typeof path === 'string') withPath = { ...view, headers: { ...view.headers, ':path': path } };
  }
  if (!(engine.needsBody?.(withPath) ?? false)) return withPath;
  let raw: unknown;
  try {
    raw = await kong.request.get_raw_body();
  } catch {
    raw = null; // kong-pdk raises when Kong answers nil + "request body did not fit into client body buffer"
  }
  return { ...withPath, body: requestBodyFromKong(raw) };
}
