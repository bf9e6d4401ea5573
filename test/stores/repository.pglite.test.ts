import { createPgliteDatabase } from '../helpers/db.js';
import { repositoryContract } from './repository.contract.js';

repositoryContract({
  name: 'pglite',
  open: () => createPgliteDatabase(),
  // PGlite is one session: the second writer is the same client (calls still interleave at statement level).
  secondWriter: (db) => db.client,
});
