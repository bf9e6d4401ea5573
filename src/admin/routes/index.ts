// The whole admin route table, in the order the OpenAPI document lists it.
import type { AdminDeps } from '../deps.js';
import type { RouteDef } from '../router.js';
import { accountRoutes } from './accounts.js';
import { auditRoutes } from './audit.js';
import { dashboardRoutes } from './dashboard.js';
import { keyRoutes } from './keys.js';
import { mappingRoutes } from './mappings.js';
import { priceRoutes } from './prices.js';
import { providerRoutes } from './providers.js';
import { settingRoutes } from './settings.js';
import { systemRoutes } from './system.js';
import { tenantRoutes } from './tenants.js';

export function adminRoutes(deps: AdminDeps): RouteDef[] {
  return [
    ...systemRoutes(deps),
    ...providerRoutes(deps),
    ...accountRoutes(deps),
    ...keyRoutes(deps),
    ...mappingRoutes(deps),
    ...tenantRoutes(deps),
    ...settingRoutes(deps),
    ...priceRoutes(deps),
    ...auditRoutes(deps),
    ...dashboardRoutes(deps),
  ];
}
