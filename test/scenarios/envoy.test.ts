// The scenario table (table.ts) through the REAL Envoy (shipped envoy/envoy.yaml) in front of keypool's ext_proc
// server and a scenario-controlled provider: every row's status, body, headers and upstream view, exactly.
// Skips with a printed notice without an Envoy binary, unless KEYPOOL_REQUIRE_ENVOY=1 (then it fails).
import { afterAll, beforeAll, describe, it } from 'vitest';
import { envoyOrSkip } from '../helpers/envoy.js';
import { startEnvoyStack, type EnvoyStack } from './envoy-driver.js';
import { clearRuntimeEnv, expectMatchesTable, runScenario, usePriorityStrategy } from './run.js';
import { SCENARIOS } from './table.js';

clearRuntimeEnv();
const ENVOY = envoyOrSkip('test/scenarios/envoy.test.ts');

describe.skipIf(!ENVOY)('scenario table through the real Envoy', () => {
  let stack: EnvoyStack;

  beforeAll(async () => {
    stack = await startEnvoyStack(ENVOY as string);
    await usePriorityStrategy(stack.keypool.runtime);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });

  for (const scenario of SCENARIOS) {
    it(scenario.name, async () => {
      expectMatchesTable(await runScenario(stack.driver, stack.keypool.runtime, scenario), scenario);
    });
  }
});
