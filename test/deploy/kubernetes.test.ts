// deploy/kubernetes offline: the kustomize base and overlay built with `kubectl kustomize` and validated by
// kubernetes-validate (PyPI) against a pinned Kubernetes version in strict mode; what the schema cannot say (ext_proc
// on loopback, probes, Secrets, replicas vs KEYPOOL_EXPECTED_REPLICAS) checked on the built objects; the Envoy
// configuration of the sidecar and of the Istio recipe validated by the real Envoy, and kept identical to
// envoy/envoy.yaml's ext_proc filter. Envoy Gateway and Istio CRDs have no schema here: parsed and checked structurally.
// Tools: kubectl (kustomize built in) and kubernetes-validate; skipped with a notice when missing, an error under
// KEYPOOL_REQUIRE_DEPLOY_TOOLS=1 (CI).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { isLoopbackListen } from '../../src/config.js';
import { envoyOrSkip, REPO_ROOT, validateEnvoyConfig } from '../helpers/envoy.js';

/** The Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas). */
const KUBERNETES_VERSION = '1.34.0';
const DEPLOY = join(REPO_ROOT, 'deploy', 'kubernetes');

type Obj = Record<string, any>;

function toolsAvailable(): boolean {
  const missing = [
    ['kubectl', ['version', '--client']],
    ['kubernetes-validate', ['--version']],
  ].filter(([tool, args]) => spawnSync(tool as string, args as string[], { stdio: 'ignore' }).status !== 0).map(([tool]) => tool);
  if (missing.length === 0) return true;
  const hint = 'apt-get install -y kubectl; python3 -m pip install kubernetes-validate';
  if (process.env.KEYPOOL_REQUIRE_DEPLOY_TOOLS === '1') throw new Error(`KEYPOOL_REQUIRE_DEPLOY_TOOLS=1 but missing: ${missing.join(', ')} (${hint})`);
  console.warn(`[skip] kubernetes manifests: missing ${missing.join(', ')} (${hint})`);
  return false;
}

const TOOLS = toolsAvailable();
const tmp = mkdtempSync(join(tmpdir(), 'kp-k8s-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function kustomize(dir: string): { file: string; objects: Obj[] } {
  const built = spawnSync('kubectl', ['kustomize', join(DEPLOY, dir)], { encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${built.stderr}`);
  const file = join(tmp, `${dir.replace(/\W+/g, '-')}.yaml`);
  writeFileSync(file, built.stdout);
  return { file, objects: documents(built.stdout) };
}

function documents(text: string): Obj[] {
  return parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(doc.errors.map(String).join('\n'));
    return doc.toJS() as Obj;
  }).filter((o) => o !== null);
}

function validate(...files: string[]): { ok: boolean; output: string } {
  const run = spawnSync('kubernetes-validate', ['--strict', '--quiet', '-k', KUBERNETES_VERSION, ...files], { encoding: 'utf8' });
  return { ok: run.status === 0, output: `${run.stdout}${run.stderr}` };
}

const byKind = (objects: Obj[], kind: string): Obj[] => objects.filter((o) => o.kind === kind);
const one = (objects: Obj[], kind: string): Obj => {
  const found = byKind(objects, kind);
  expect(found.length, kind).toBe(1);
  return found[0]!;
};
const container = (deployment: Obj, name: string): Obj => deployment.spec.template.spec.containers.find((c: Obj) => c.name === name);

/** The ext_proc filter's typed_config in an Envoy bootstrap. */
function extProcFilter(bootstrap: Obj): Obj {
  const hcm = bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  return hcm.http_filters.find((f: Obj) => f.name === 'envoy.filters.http.ext_proc').typed_config;
}

const reference = parse(readFileSync(join(REPO_ROOT, 'envoy', 'envoy.yaml'), 'utf8')) as Obj;

describe.skipIf(!TOOLS)('kubernetes manifests (offline)', () => {
  const base = TOOLS ? kustomize('base') : { file: '', objects: [] };
  const overlay = TOOLS ? kustomize('overlays/redis-replicas') : { file: '', objects: [] };

  it(`base, overlay, Secret example and Job validate against Kubernetes ${KUBERNETES_VERSION} (strict)`, () => {
    const result = validate(base.file, overlay.file, join(DEPLOY, 'secret.example.yaml'), join(DEPLOY, 'jobs', 'add-account.yaml'));
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });

  it('strict validation catches a misspelt field (the check can fail)', () => {
    const broken = join(tmp, 'broken.yaml');
    writeFileSync(broken, readFileSync(base.file, 'utf8').replace('readOnlyRootFilesystem: true', 'readOnlyRootFileSystem: true'));
    expect(validate(broken).ok).toBe(false);
  });

  it('base: Envoy and keypool in one pod, ext_proc on loopback, probes, secrets from the Secret, hardened containers', () => {
    const deployment = one(base.objects, 'Deployment');
    const config = byKind(base.objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('keypool-config'))!.data;
    const envoyConfig = byKind(base.objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('keypool-envoy'))!;
    const keypool = container(deployment, 'keypool');
    const envoy = container(deployment, 'envoy');
    expect(isLoopbackListen(config.KEYPOOL_GRPC_LISTEN)).toBe(true);
    expect(keypool.envFrom[0].configMapRef.name).toBe(byKind(base.objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('keypool-config'))!.metadata.name);
    // Secrets only ever through secretKeyRef.
    for (const name of ['DATABASE_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER', 'KEYPOOL_ADMIN_TOKEN']) {
      const entry = keypool.env.find((e: Obj) => e.name === name);
      expect(entry?.valueFrom?.secretKeyRef?.name, name).toBe('keypool-secrets');
      expect(config[name], name).toBeUndefined();
    }
    expect(keypool.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(keypool.ports.find((p: Obj) => p.name === 'admin').containerPort).toBe(Number(config.KEYPOOL_ADMIN_LISTEN.split(':')[1]));
    for (const c of [keypool, envoy]) {
      expect(c.securityContext.readOnlyRootFilesystem, c.name).toBe(true);
      expect(c.securityContext.allowPrivilegeEscalation, c.name).toBe(false);
      expect(c.resources.requests.cpu, c.name).toBeDefined();
      expect(c.resources.limits.memory, c.name).toBeDefined();
    }
    expect(deployment.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    // Envoy reads the generated ConfigMap, which is deploy/kubernetes/base/envoy.yaml.
    expect(deployment.spec.template.spec.volumes.find((v: Obj) => v.name === 'envoy-config').configMap.name).toBe(envoyConfig.metadata.name);
    expect(envoy.command).toEqual(['envoy', '-c', '/etc/envoy/envoy.yaml', '--log-level', 'info']);
    expect(envoyConfig.data['envoy.yaml']).toBe(readFileSync(join(DEPLOY, 'base', 'envoy.yaml'), 'utf8'));
    // Service and PDB select the pods.
    const labels = deployment.spec.template.metadata.labels;
    expect(one(base.objects, 'Service').spec.selector).toEqual(labels);
    expect(one(base.objects, 'PodDisruptionBudget').spec.selector.matchLabels).toEqual(labels);
    expect(one(base.objects, 'Service').spec.ports.map((p: Obj) => p.targetPort)).toEqual(['http']);
  });

  it("the sidecar's Envoy talks to keypool's loopback port, with keypool's ext_proc filter and a per-connection budget", () => {
    const sidecar = parse(readFileSync(join(DEPLOY, 'base', 'envoy.yaml'), 'utf8')) as Obj;
    const config = byKind(base.objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('keypool-config'))!.data;
    const cluster = sidecar.static_resources.clusters.find((c: Obj) => c.name === 'keypool');
    const address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    expect(`${address.address}:${address.port_value}`).toBe(config.KEYPOOL_GRPC_LISTEN);
    const options = cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
    expect(options.common_http_protocol_options.max_requests_per_connection).toBeLessThan(1_000);
    expect(extProcFilter(sidecar)).toEqual(extProcFilter(reference));
    // Below its header the sidecar file is envoy/envoy.yaml itself.
    const marker = /^# Validate: envoy --mode validate -c \S+\n\n/m;
    const bodyOf = (text: string) => text.slice(text.search(marker)).replace(marker, '');
    expect(bodyOf(readFileSync(join(DEPLOY, 'base', 'envoy.yaml'), 'utf8'))).toBe(bodyOf(readFileSync(join(REPO_ROOT, 'envoy', 'envoy.yaml'), 'utf8')));
  });

  it('overlay: replicas share Redis, the local fallback divides by the replica count, the PDB keeps a majority', () => {
    const deployment = one(overlay.objects, 'Deployment');
    const config = byKind(overlay.objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('keypool-config'))!;
    const keypool = container(deployment, 'keypool');
    expect(keypool.envFrom[0].configMapRef.name).toBe(config.metadata.name);
    expect(Number(config.data.KEYPOOL_EXPECTED_REPLICAS)).toBe(deployment.spec.replicas);
    expect(deployment.spec.replicas).toBeGreaterThan(1);
    expect(keypool.env.find((e: Obj) => e.name === 'REDIS_URL').valueFrom.secretKeyRef).toEqual({ name: 'keypool-secrets', key: 'REDIS_URL' });
    // Every base variable is still there (the patch merged, it did not replace).
    for (const name of ['DATABASE_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER', 'KEYPOOL_ADMIN_TOKEN']) expect(keypool.env.some((e: Obj) => e.name === name), name).toBe(true);
    const pdb = one(overlay.objects, 'PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).toBeUndefined();
    expect(pdb.spec.minAvailable).toBeGreaterThan(deployment.spec.replicas / 2);
    expect(pdb.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
  });

  describe('recipes', () => {
    const recipe = (file: string): Obj[] => documents(readFileSync(join(DEPLOY, 'recipes', file), 'utf8'));
    const builtIn = (objects: Obj[]) => objects.filter((o) => ['apps/v1', 'v1', 'policy/v1', 'batch/v1'].includes(o.apiVersion));

    it('every document parses, and the built-in kinds validate (strict)', () => {
      const files = readdirSync(join(DEPLOY, 'recipes'), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile() && e.name.endsWith('.yaml'))
        .map((e) => join(e.parentPath, e.name));
      expect(files.length).toBe(5);
      const builtins: Obj[] = files.flatMap((file) => builtIn(documents(readFileSync(file, 'utf8'))));
      const combined = join(tmp, 'recipes-builtin.yaml');
      writeFileSync(combined, builtins.map((o) => stringify(o)).join('---\n'));
      expect(builtins.length).toBeGreaterThanOrEqual(6);
      const result = validate(combined);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
    });

    it('Istio: the EnvoyFilter carries envoy.yaml\'s ext_proc filter and gives every provider route its provider', () => {
      const filter = one(recipe('istio/envoyfilter.yaml'), 'EnvoyFilter');
      const patches: Obj[] = filter.spec.configPatches;
      const httpFilter = patches.find((p) => p.applyTo === 'HTTP_FILTER')!;
      expect(httpFilter.patch.operation).toBe('INSERT_BEFORE');
      expect(httpFilter.patch.value.typed_config).toEqual(extProcFilter(reference));
      const cluster = patches.find((p) => p.applyTo === 'CLUSTER')!.patch.value;
      expect(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address).toBe('127.0.0.1');
      const keypool = container(one(recipe('istio/gateway.yaml'), 'Deployment'), 'keypool');
      expect(isLoopbackListen(keypool.env.find((e: Obj) => e.name === 'KEYPOOL_GRPC_LISTEN').value)).toBe(true);
      const routes = one(recipe('istio/routing.yaml'), 'VirtualService').spec.http.map((r: Obj) => r.name);
      const routePatches = patches.filter((p) => p.applyTo === 'HTTP_ROUTE');
      expect(routePatches.map((p) => p.match.routeConfiguration.vhost.route.name).sort()).toEqual([...routes].sort());
      for (const p of routePatches) {
        const metadata = p.patch.value.typed_per_filter_config['envoy.filters.http.ext_proc'].overrides.grpc_initial_metadata;
        expect(metadata).toEqual([{ key: 'x-keypool-provider', value: p.match.routeConfiguration.vhost.route.name }]);
      }
    });

    it('Envoy Gateway: fail-closed extProc on every provider route over mTLS, each route patched with its provider', () => {
      const objects = recipe('envoy-gateway/envoy-gateway.yaml');
      const policy = one(objects, 'EnvoyExtensionPolicy');
      const extProc = policy.spec.extProc[0];
      expect(extProc.failOpen).toBe(false);
      expect(extProc.attributes.request).toEqual(['source.address']);
      const routes = byKind(objects, 'HTTPRoute').map((r) => r.metadata.name);
      expect(policy.spec.targetRefs.map((t: Obj) => t.name).sort()).toEqual([...routes].sort());
      const service = one(recipe('envoy-gateway/keypool.yaml'), 'Service');
      expect(service.metadata.name).toBe(extProc.backendRefs[0].name);
      expect(service.spec.ports.map((p: Obj) => p.port)).toContain(extProc.backendRefs[0].port);
      // keypool is remote here: TLS and client certificates, as keypool requires off loopback.
      const env = container(one(recipe('envoy-gateway/keypool.yaml'), 'Deployment'), 'keypool').env.map((e: Obj) => e.name);
      expect(env).toEqual(expect.arrayContaining(['KEYPOOL_GRPC_TLS_CERT', 'KEYPOOL_GRPC_TLS_KEY', 'KEYPOOL_GRPC_TLS_CLIENT_CA']));
      expect(one(objects, 'BackendTLSPolicy').spec.targetRefs[0].name).toBe(service.metadata.name);
      const patches: Obj[] = one(objects, 'EnvoyPatchPolicy').spec.jsonPatches;
      const filterKey = `envoy.filters.http.ext_proc/envoyextensionpolicy/${policy.metadata.namespace}/${policy.metadata.name}/extproc/0`;
      for (const route of routes) {
        const patch = patches.find((p) => p.operation.jsonPath.includes(`httproute/${policy.metadata.namespace}/${route}/`));
        expect(patch, route).toBeDefined();
        expect(patch!.operation.path).toBe(`/typed_per_filter_config/${filterKey.replace(/~/g, '~0').replace(/\//g, '~1')}`);
        expect(patch!.operation.value.config.overrides.grpc_initial_metadata).toEqual([{ key: 'x-keypool-provider', value: route }]);
      }
    });
  });
});

describe.skipIf(!TOOLS)('Envoy configurations of the deployment (real Envoy)', () => {
  const bin = TOOLS ? envoyOrSkip('deploy envoy configs') : null;

  it.skipIf(!bin)('the sidecar bootstrap passes envoy --mode validate', async () => {
    const result = await validateEnvoyConfig(bin!, join(DEPLOY, 'base', 'envoy.yaml'));
    expect(result.output).not.toMatch(/error/i);
    expect(result.code).toBe(0);
  });

  it.skipIf(!bin)("envoy.yaml with the Istio EnvoyFilter's cluster, filter and route patches (and Envoy Gateway's route value) passes envoy --mode validate", async () => {
    const patches: Obj[] = one(documents(readFileSync(join(DEPLOY, 'recipes', 'istio', 'envoyfilter.yaml'), 'utf8')), 'EnvoyFilter').spec.configPatches;
    const egPatches: Obj[] = one(documents(readFileSync(join(DEPLOY, 'recipes', 'envoy-gateway', 'envoy-gateway.yaml'), 'utf8')), 'EnvoyPatchPolicy').spec.jsonPatches;
    const bootstrap = structuredClone(reference);
    const clusters: Obj[] = bootstrap.static_resources.clusters;
    clusters[clusters.findIndex((c) => c.name === 'keypool')] = patches.find((p) => p.applyTo === 'CLUSTER')!.patch.value;
    const hcm = bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    hcm.http_filters[hcm.http_filters.findIndex((f: Obj) => f.name === 'envoy.filters.http.ext_proc')] = patches.find((p) => p.applyTo === 'HTTP_FILTER')!.patch.value;
    const routes: Obj[] = hcm.route_config.virtual_hosts[0].routes;
    for (const p of patches.filter((q) => q.applyTo === 'HTTP_ROUTE')) {
      const route = routes.find((r) => r.match.prefix === `/${p.match.routeConfiguration.vhost.route.name}/`)!;
      route.typed_per_filter_config = p.patch.value.typed_per_filter_config;
    }
    // Envoy Gateway's per-route value (a FilterConfig wrapping ExtProcPerRoute) on one more route.
    routes.splice(routes.length - 1, 0, {
      match: { prefix: '/eg-openai/' },
      route: { cluster: 'openai', prefix_rewrite: '/', timeout: '600s' },
      typed_per_filter_config: { 'envoy.filters.http.ext_proc': egPatches[0]!.operation.value },
    });
    const file = join(tmp, 'istio-bootstrap.yaml');
    writeFileSync(file, stringify(bootstrap));
    const result = await validateEnvoyConfig(bin!, file);
    expect(result.output).not.toMatch(/error/i);
    expect(result.code).toBe(0);
  });
});
