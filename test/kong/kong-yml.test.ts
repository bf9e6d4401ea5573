// kong/kong.yml: valid for decK, and its keypool configs are ones the plugin accepts.
import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { parseKongConfig } from '../../src/adapters/kong/codec.js';
import { KONG_YML_PATH, REQUIRE_KONG_TOOLS, haveTool, readKongYml } from './kong-tools.js';

const hasDeck = haveTool('deck', ['version'], 'apt-get install -y deck');

/** decK 1.28+ says `deck file validate`; Debian's decK 1.x only has `deck validate -s`. */
function deckValidate(file: string): ReturnType<typeof spawnSync> {
  const modern = spawnSync('deck', ['file', 'validate', '--help'], { encoding: 'utf8' }).status === 0;
  const args = modern ? ['file', 'validate', file] : ['validate', '-s', file];
  return spawnSync('deck', args, { encoding: 'utf8' });
}

describe.skipIf(!hasDeck)('decK', () => {
  test('deck file validate kong/kong.yml passes', () => {
    const run = deckValidate(KONG_YML_PATH);
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
  });
});

test.runIf(REQUIRE_KONG_TOOLS)('deck is installed (KEYPOOL_REQUIRE_KONG_TOOLS=1)', () => {
  expect(hasDeck).toBe(true);
});

describe('kong.yml content', () => {
  const config = readKongYml();

  test('format 3.0 with an OpenAI-style and an Anthropic-style service, each with a route', () => {
    expect(config._format_version).toBe('3.0');
    expect(config.services.map((service) => [service.name, service.url, service.routes?.[0]?.paths])).toEqual([
      ['openai', 'https://api.openai.com', ['/openai']],
      ['anthropic', 'https://api.anthropic.com', ['/anthropic']],
    ]);
  });

  test('every keypool config is one the plugin accepts', () => {
    const configs = config.services.flatMap((service) => service.plugins ?? []).filter((plugin) => plugin.name === 'keypool');
    expect(configs.map((plugin) => parseKongConfig(plugin.config))).toEqual([
      { ok: true, config: { provider: 'openai', strategy: null, keyHeaders: null } },
      { ok: true, config: { provider: 'anthropic', strategy: 'least-loaded', keyHeaders: ['x-api-key', 'authorization'] } },
    ]);
  });

  test('every service with keypool drops a `__proto__` header first (kong-pdk cannot carry it)', () => {
    for (const service of config.services) {
      const plugins = (service.plugins ?? []) as Array<{ name: string; config?: Record<string, unknown> }>;
      const names = plugins.map((plugin) => plugin.name);
      if (!names.includes('keypool')) continue;
      expect(plugins.find((plugin) => plugin.name === 'pre-function')?.config, service.name).toEqual({
        access: ['kong.service.request.clear_header("__proto__")'],
        header_filter: ['kong.response.clear_header("__proto__")'],
      });
    }
  });
});
