// Interprets the scenario table (table.ts) against one gateway: puts the config store in the scenario's state, sends
// the `before` requests and the checked request through a GatewayDriver (envoy-driver.ts, kong-driver.ts), and
// reduces what happened to an Observation: the same shape whichever gateway ran it, so observations compare as
// values, with the table and with each other.
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { Runtime } from '../../src/runtime.js';
import {
  OK_BY_PROVIDER,
  OPENAI_STREAM,
  UPSTREAM_HEADERS,
  type AccountLabel,
  type ExpectedAnswer,
  type RequestSpec,
  type Scenario,
  type UpstreamHeader,
  type UpstreamReply,
} from './table.js';

/** What the client got for one request, and what the upstream got if keypool let the request through. */
export interface Exchange {
  readonly status: number;
  readonly body: string;
  /** Response headers keypool set, when the upstream was not called (gateway-added headers removed). */
  readonly headers: Readonly<Record<string, string>> | null;
  /** Request headers as the upstream received them; null = the upstream was not called. */
  readonly upstreamRequest: Readonly<Record<string, string | readonly string[] | undefined>> | null;
}

export interface HeldExchange {
  /** Lets the upstream finish its answer; resolves with the finished exchange. */
  release(): Promise<Exchange>;
}

/** One gateway with keypool in it, in front of a provider the driver controls. */
export interface GatewayDriver {
  readonly name: string;
  /** Resolves once the gateway's keypool decides on the config store as it is now (`marker`: a key issued last). */
  sync(marker: string): Promise<void>;
  /** One request; `reply` is the upstream's answer if the request gets there. */
  send(request: RequestSpec, clientHeaders: Readonly<Record<string, string>>, reply: UpstreamReply): Promise<Exchange>;
  /**
   * One request the upstream keeps in flight: `held` sends nothing yet, `streaming` sends the response headers and
   * keeps the body open. Resolves once keypool decided it (and, streaming, once the client has the headers).
   */
  hold(
    request: RequestSpec,
    clientHeaders: Readonly<Record<string, string>>,
    reply: UpstreamReply,
    mode: 'held' | 'streaming',
  ): Promise<HeldExchange>;
}

export interface Answer {
  readonly status: number;
  readonly code: string | null;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>> | null;
  readonly upstream: Readonly<Record<UpstreamHeader, string | null>> | null;
}

export interface Observation {
  readonly before: ReadonlyArray<{ readonly status: number; readonly account: AccountLabel | null }>;
  readonly answer: Answer;
  /** True if any header the upstream received carried the client's own key (must never happen). */
  readonly clientKeyForwarded: boolean;
  readonly accountsAfter: Readonly<Partial<Record<AccountLabel, string>>> | null;
}

const ACTOR = 'scenarios';
const PROVIDERS = ['openai', 'anthropic'] as const;

/** The runtime reads these from the environment: keep the caller's out (each test file runs in its own process). */
export function clearRuntimeEnv(): void {
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER', 'KEYPOOL_DATA_DIR', 'KEYPOOL_KEY_HEADERS']) {
    delete process.env[name];
  }
}

/**
 * Once per store: the scenario providers select by `priority` (tier order), so which account serves a request is
 * deterministic and part of the expected answer. This is the operator's knob (sql/seed/providers.sql leaves an
 * existing row's strategy alone).
 */
export async function usePriorityStrategy(runtime: Runtime): Promise<void> {
  await runtime.store.client.query(`UPDATE providers SET default_strategy = 'priority' WHERE slug = ANY($1::text[])`, [[...PROVIDERS]]);
  await runtime.snapshots.reload('manual');
}

interface Prepared {
  readonly clientKey: string | null;
  readonly clientHeaders: Readonly<Record<string, string>>;
  readonly secrets: ReadonlyMap<string, AccountLabel>;
  readonly accountIds: ReadonlyMap<AccountLabel, string>;
  readonly marker: string;
}

const tag = (): string => randomBytes(4).toString('hex');

/** The scenario's pool (only its accounts active), its client key, and a marker key issued after everything else. */
async function prepare(runtime: Runtime, scenario: Scenario): Promise<Prepared> {
  const repo = runtime.repository;
  const provider = scenario.request.provider;
  for (const account of await repo.accounts.list({ providerSlug: provider, status: 'active' })) {
    await repo.accounts.setStatus(account.id, 'disabled', 'scenarios: next scenario', ACTOR);
  }
  const secrets = new Map<string, AccountLabel>();
  const accountIds = new Map<AccountLabel, string>();
  for (const spec of scenario.accounts) {
    const secret = `sk-${provider}-${spec.label}-${tag()}`;
    const row = await repo.accounts.create(
      { providerSlug: provider, name: `${spec.label}-${tag()}`, apiKey: secret, tier: spec.tier, maxConcurrency: spec.maxConcurrency ?? null },
      ACTOR,
    );
    secrets.set(secret, spec.label);
    accountIds.set(spec.label, row.id);
  }

  const key = scenario.key;
  let clientKey: string | null = null;
  if (key.state === 'unknown') clientKey = `kp_${randomBytes(30).toString('hex').slice(0, 40)}`;
  else if (key.state !== 'missing') {
    const issued = await repo.keys.create(
      {
        name: `client-${tag()}`,
        tenantId: key.tenantId ?? null,
        allowedIps: key.allowedIps ?? [],
        expiresAt: key.state === 'expired' ? new Date(Date.now() - 60_000) : null,
      },
      ACTOR,
    );
    if (key.state === 'revoked') await repo.keys.revoke(issued.row.id, ACTOR);
    clientKey = issued.plaintextKey;
  }
  const clientHeaders: Record<string, string> = {};
  if (clientKey !== null) {
    if (scenario.request.keyHeader === 'authorization') clientHeaders['authorization'] = `Bearer ${clientKey}`;
    else clientHeaders['x-api-key'] = clientKey;
  }
  if (scenario.request.provider === 'anthropic') clientHeaders['anthropic-version'] = '2023-06-01';
  const marker = (await repo.keys.create({ name: `sync-${tag()}` }, ACTOR)).plaintextKey;
  return { clientKey, clientHeaders, secrets, accountIds, marker };
}

/** Runs one scenario through one gateway. */
export async function runScenario(driver: GatewayDriver, runtime: Runtime, scenario: Scenario): Promise<Observation> {
  const prepared = await prepare(runtime, scenario);
  await driver.sync(prepared.marker);
  const upstreamRequests: Array<Exchange['upstreamRequest']> = [];
  const before: Array<{ status: number; account: AccountLabel | null } | HeldExchange> = [];
  for (const step of scenario.before ?? []) {
    if ('held' in step) before.push(await driver.hold(scenario.request, prepared.clientHeaders, OK_BY_PROVIDER[scenario.request.provider], 'held'));
    else if ('streaming' in step) before.push(await driver.hold(scenario.request, prepared.clientHeaders, OPENAI_STREAM, 'streaming'));
    else before.push(recordBefore(await driver.send(scenario.request, prepared.clientHeaders, step.reply), prepared, upstreamRequests));
  }
  const checked = await driver.send(scenario.request, prepared.clientHeaders, OK_BY_PROVIDER[scenario.request.provider]);
  upstreamRequests.push(checked.upstreamRequest);
  const beforeSeen: Array<{ status: number; account: AccountLabel | null }> = [];
  for (const entry of before) {
    beforeSeen.push(
'release' in entry ? recordBefore(await entry.release(), prepared, upstreamRequests) : entry,
    );
  }
  return {
    before: beforeSeen,
    answer: answerOf(checked, prepared),
    clientKeyForwarded:
      prepared.clientKey !== null &&
      upstreamRequests.some((headers) => headerValues(headers).some((value) => value.includes(prepared.clientKey as string))),
    accountsAfter: scenario.accountsAfter ? await settledStatuses(runtime, prepared, scenario.accountsAfter) : null,
  };
}

function recordBefore(
  exchange: Exchange,
  prepared: Prepared,
  upstreamRequests: Array<Exchange['upstreamRequest']>,
): { status: number; account: AccountLabel | null } {
  upstreamRequests.push(exchange.upstreamRequest);
  return { status: exchange.status, account: accountOf(exchange.upstreamRequest, prepared) };
}

function answerOf(exchange: Exchange, prepared: Prepared): Answer {
  const upstream = exchange.upstreamRequest;
  return {
    status: exchange.status,
    code: upstream === null ? denyCodeOf(exchange.body) : null,
    body: exchange.body,
    headers: upstream === null ? exchange.headers : null,
    upstream:
      upstream === null
        ? null
        : (Object.fromEntries(
            UPSTREAM_HEADERS.map((name) => {
              const value = first(upstream[name]);
              return [name, value === null ? null : withSecretLabels(value, prepared)];
            }),
          ) as Record<UpstreamHeader, string | null>),
  };
}

function denyCodeOf(body: string): string | null {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}

function first(value: string | readonly string[] | undefined): string | null {
  if (value === undefined) return null;
  return typeof value === 'string' ? value : (value[0] ?? null);
}

function headerValues(headers: Exchange['upstreamRequest']): string[] {
  if (headers === null) return [];
  return Object.values(headers).flatMap((value) => (value === undefined ? [] : typeof value === 'string' ? [value] : [...value]));
}

function withSecretLabels(value: string, prepared: Prepared): string {
  let out = value;
  for (const [secret, label] of prepared.secrets) out = out.split(secret).join(`{${label}}`);
  return out;
}

function accountOf(headers: Exchange['upstreamRequest'], prepared: Prepared): AccountLabel | null {
  for (const value of headerValues(headers)) {
    for (const [secret, label] of prepared.secrets) if (value.includes(secret)) return label;
  }
  return null;
}

/** Account statuses in the store, polled until they match `expected` (writes are buffered) or 5 s passed. */
async function settledStatuses(
  runtime: Runtime,
  prepared: Prepared,
  expected: Readonly<Partial<Record<AccountLabel, string>>>,
): Promise<Partial<Record<AccountLabel, string>>> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const seen: Partial<Record<AccountLabel, string>> = {};
    for (const label of Object.keys(expected) as AccountLabel[]) {
      const id = prepared.accountIds.get(label);
      seen[label] = id === undefined ? 'no such account' : (await runtime.repository.accounts.get(id)).status;
    }
    if (JSON.stringify(seen) === JSON.stringify(expected) || Date.now() > deadline) return seen;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// -------------------------------------------------------------------------------------------------------------
// Assertions
// -------------------------------------------------------------------------------------------------------------

/**
 * A retry-after keypool computed from a cooldown is ceil(seconds left): it reads one less when a second boundary
 * passes between the upstream's 429 and the checked request. Accept exactly that and nothing else.
 */
function retryAfterWithinATick(observed: string | undefined, expected: string | undefined): boolean {
  if (observed === undefined || expected === undefined) return observed === expected;
  const diff = Number(expected) - Number(observed);
  return /^\d+$/.test(observed) && (diff === 0 || (diff === 1 && Number(expected) > 1));
}

function withoutRetryAfter(answer: Answer | ExpectedAnswer): Answer | ExpectedAnswer {
  if (answer.headers === null || !('retry-after' in answer.headers)) return answer;
  const { 'retry-after': _dropped, ...headers } = answer.headers;
  return { ...answer, headers };
}

/** The observation is exactly the table's row (retry-after: within one clock tick of it). */
export function expectMatchesTable(observation: Observation, scenario: Scenario): void {
  expect(observation.before, 'before requests: status and serving account').toEqual(scenario.expectBefore ?? []);
  expect(withoutRetryAfter(observation.answer), 'answer').toEqual(withoutRetryAfter(scenario.expect));
  const observedRetryAfter = observation.answer.headers?.['retry-after'];
  const expectedRetryAfter = scenario.expect.headers?.['retry-after'];
  expect(
    retryAfterWithinATick(observedRetryAfter, expectedRetryAfter),
    `retry-after ${String(observedRetryAfter)}, expected ${String(expectedRetryAfter)}`,
  ).toBe(true);
  expect(observation.clientKeyForwarded, 'client key reached the upstream').toBe(false);
  expect(observation.accountsAfter, 'account statuses afterwards').toEqual(scenario.accountsAfter ?? null);
}

/** Both gateways gave the same observation: statuses, bodies, headers, upstream view (retry-after within a tick). */
export function expectSameObservation(envoy: Observation, kong: Observation): void {
  expect({ ...kong, answer: withoutRetryAfter(kong.answer) }, 'Kong vs Envoy').toEqual({ ...envoy, answer: withoutRetryAfter(envoy.answer) });
  const [a, b] = [envoy.answer.headers?.['retry-after'], kong.answer.headers?.['retry-after']];
  const close = a === b || (a !== undefined && b !== undefined && Math.abs(Number(a) - Number(b)) <= 1);
  expect(close, `retry-after: Envoy ${String(a)}, Kong ${String(b)}`).toBe(true);
}
