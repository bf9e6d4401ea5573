import { createPgliteDatabase } from '../helpers/db.js';
import { reconcileContract } from './reconcile.contract.js';

reconcileContract({ name: 'pglite', open: () => createPgliteDatabase() });
