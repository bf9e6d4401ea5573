// The scenario table (table.ts) through the REAL kong-js-pluginserver running the shipped keypool entry with the
// real runtime: a denial is what the bundled Lua guard (kong/guard.lua under luajit) sends the client, an allow is
// the upstream request as keypool's header mutations left it. Every row, exactly.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { startKongStack, type KongStack } from './kong-driver.js';
import { clearRuntimeEnv, expectMatchesTable, runScenario, usePriorityStrategy } from './run.js';
import { SCENARIOS } from './table.js';

clearRuntimeEnv();

describe('scenario table through the real Kong plugin server', () => {
  let stack: KongStack;

  beforeAll(async () => {
    stack = await startKongStack();
    await usePriorityStrategy(stack.runtime);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });

  for (const scenario of SCENARIOS) {
    it(scenario.name, async () => {
      expectMatchesTable(await runScenario(stack.driver, stack.runtime, scenario), scenario);
    });
  }
});
