// Both adapters side by side on ONE config store: each scenario of table.ts runs through the real Envoy (keypool's
// ext_proc server in this process, owning the embedded store) and then through the real Kong plugin server (its
// runtime a client of the same store), and the two observations must be identical: statuses, bodies, keypool's
// response headers, which account served, what the upstream received (retry-after: within one clock tick).
// Needs Envoy: skips with a printed notice without it, unless KEYPOOL_REQUIRE_ENVOY=1.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { envoyOrSkip } from '../helpers/envoy.js';
import { startEnvoyStack, type EnvoyStack } from './envoy-driver.js';
import { startKongStack, type KongStack } from './kong-driver.js';
import { clearRuntimeEnv, expectSameObservation, runScenario, usePriorityStrategy } from './run.js';
import { SCENARIOS } from './table.js';

clearRuntimeEnv();
const ENVOY = envoyOrSkip('test/scenarios/parity.test.ts');

describe.skipIf(!ENVOY)('Envoy and Kong give identical answers', () => {
  let envoy: EnvoyStack;
  let kong: KongStack;

  beforeAll(async () => {
    envoy = await startEnvoyStack(ENVOY as string);
    await usePriorityStrategy(envoy.keypool.runtime);
    kong = await startKongStack({ dataDir: envoy.dataDir, owner: envoy.keypool.runtime });
  }, 60_000);

  afterAll(async () => {
    await kong?.stop();
    await envoy?.stop();
  });

  for (const scenario of SCENARIOS) {
    it(scenario.name, async () => {
      const runtime = envoy.keypool.runtime;
      const throughEnvoy = await runScenario(envoy.driver, runtime, scenario);
      const throughKong = await runScenario(kong.driver, runtime, scenario);
      expectSameObservation(throughEnvoy, throughKong);
    });
  }
});
