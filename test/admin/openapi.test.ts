// openapi.yaml (repo root) and the router's route table describe the same API: every documented operation exists,
// every served route is documented, and what the document says about auth and path parameters matches the table.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { AdminDeps } from '../../src/admin/deps.js';
import { adminRoutes } from '../../src/admin/routes/index.js';
import { toOpenApiPath, type RouteDef } from '../../src/admin/router.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options', 'trace'] as const;

interface Operation {
  readonly security?: unknown[];
  readonly parameters?: Array<{ name?: string; in?: string; $ref?: string }>;
  readonly responses?: Record<string, unknown>;
}

const document = parse(readFileSync(fileURLToPath(new URL('../../openapi.yaml', import.meta.url)), 'utf8')) as {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
  components: { parameters: Record<string, { name: string; in: string }> };
};

// Handlers are never called here: the table is data, so deps may be empty.
const routes: RouteDef[] = adminRoutes({} as AdminDeps);

function documentedOperations(): Map<string, Operation & { pathParameters: string[] }> {
  const operations = new Map<string, Operation & { pathParameters: string[] }>();
  for (const [path, item] of Object.entries(document.paths)) {
    const shared = (item.parameters ?? []) as Operation['parameters'];
    for (const method of METHODS) {
      const operation = item[method] as Operation | undefined;
      if (!operation) continue;
      const parameters = [...(shared ?? []), ...(operation.parameters ?? [])].map(resolveParameter);
      operations.set(`${method.toUpperCase()} ${path}`, {
        ...operation,
        pathParameters: parameters.filter((p) => p.in === 'path').map((p) => p.name),
      });
    }
  }
  return operations;
}

function resolveParameter(parameter: { name?: string; in?: string; $ref?: string }): { name: string; in: string } {
  if (parameter.$ref) {
    const name = parameter.$ref.replace('#/components/parameters/', '');
    const resolved = document.components.parameters[name];
    if (!resolved) throw new Error(`unresolved parameter ${parameter.$ref}`);
    return resolved;
  }
  return { name: parameter.name ?? '', in: parameter.in ?? '' };
}

describe('openapi.yaml', () => {
  const documented = documentedOperations();
  const served = new Map(routes.map((route) => [`${route.method} ${toOpenApiPath(route.path)}`, route]));

  it('is an OpenAPI 3.1 document with operations', () => {
    expect(document.openapi).toMatch(/^3\.1\./);
    expect(documented.size).toBeGreaterThan(20);
  });

  it('documents every route the router serves', () => {
    const undocumented = [...served.keys()].filter((op) => !documented.has(op));
    expect(undocumented).toEqual([]);
  });

  it('serves every documented operation', () => {
    const missing = [...documented.keys()].filter((op) => !served.has(op));
    expect(missing).toEqual([]);
  });

  it('declares each path template parameter', () => {
    for (const [op, operation] of documented) {
      const inTemplate = [...op.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      expect(operation.pathParameters.sort(), op).toEqual(inTemplate.sort());
    }
  });

  it('marks exactly the public routes as needing no token and documents 401 on the others', () => {
    for (const [op, route] of served) {
      const operation = documented.get(op)!;
      if (route.access === 'public') {
        expect(operation.security, op).toEqual([]);
      } else {
        expect(operation.security === undefined || operation.security.length > 0, op).toBe(true);
        expect(Object.keys(operation.responses ?? {}), op).toContain('401');
      }
    }
  });
});
