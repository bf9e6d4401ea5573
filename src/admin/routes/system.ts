// Liveness, readiness and the Prometheus scrape endpoint.
import type { AdminDeps } from '../deps.js';
import type { RouteDef } from '../router.js';

export function systemRoutes(deps: AdminDeps): RouteDef[] {
  return [
    {
      method: 'GET',
      path: '/healthz',
      access: 'public',
      // The process answers: that is all liveness means (a dead database must not get the pod restarted).
      handler: async () => ({ status: 200, body: { status: 'ok' } }),
    },
    {
      method: 'GET',
      path: '/readyz',
      access: 'public',
      handler: async () => {
        const snapshot = deps.snapshots.current();
        if (!snapshot) return { status: 503, body: { status: 'not_ready', reason: 'configuration snapshot not loaded yet' } };
        const loadedAtMs = deps.snapshots.lastReloadAtMs ?? snapshot.loadedAtMs;
        return {
          status: 200,
          body: {
            status: 'ready',
            snapshot_version: snapshot.version,
            snapshot_age_seconds: Math.max(0, Math.round((deps.clock.nowMs() - loadedAtMs) / 100) / 10),
            reload_failures: deps.snapshots.reloadFailures,
          },
        };
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      access: 'metrics',
      handler: async () => {
        const { contentType, text } = await deps.metrics.render();
        return { status: 200, text: { contentType, content: text } };
      },
    },
  ];
}
