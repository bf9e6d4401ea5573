import { createPostgresDatabase, describePostgres } from '../helpers/db.js';
import { reconcileContract } from './reconcile.contract.js';

describePostgres('keypool apply/diff/dump on PostgreSQL', () => {
  reconcileContract({ name: 'postgres', open: () => createPostgresDatabase() });
});
