// Locates the external tools the Kong tests use (luajit, deck). Missing tools skip those tests with a notice,
// unless KEYPOOL_REQUIRE_KONG_TOOLS=1 (CI), where a missing tool fails instead.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from './plugin-tree.js';

export const REQUIRE_KONG_TOOLS = process.env['KEYPOOL_REQUIRE_KONG_TOOLS'] === '1';

/** True when `command` runs; otherwise prints why the dependent tests are skipped. */
export function haveTool(command: string, versionArgs: readonly string[], install: string): boolean {
  const probe = spawnSync(command, versionArgs, { encoding: 'utf8' });
  const found = probe.error === undefined && probe.status === 0;
  if (!found && !REQUIRE_KONG_TOOLS) {
    console.warn(`[kong tests] ${command} not found: skipping its tests (${install}; KEYPOOL_REQUIRE_KONG_TOOLS=1 makes this fail)`);
  }
  return found;
}

export const GUARD_PATH = path.join(REPO_ROOT, 'kong', 'guard.lua');
export const KONG_YML_PATH = path.join(REPO_ROOT, 'kong', 'kong.yml');

export interface DeclarativePlugin {
  name: string;
  config?: Record<string, unknown>;
}

export interface DeclarativeService {
  name: string;
  url?: string;
  routes?: Array<{ name: string; paths?: string[] }>;
  plugins?: DeclarativePlugin[];
}

export interface DeclarativeConfig {
  _format_version: string;
  services: DeclarativeService[];
}

export function readKongYml(): DeclarativeConfig {
  return parse(readFileSync(KONG_YML_PATH, 'utf8')) as DeclarativeConfig;
}
