// The embedded data directory holds the database (upstream keys encrypted, client key digests, audit), the
// generated key ring and pepper, and the socket-share token: readable and writable by its owner only, whether
// keypool created it or it was there before (a pre-existing 0755 directory, files PGlite wrote as 0644 or 0666).
// The directory is made 0700 first, so files created later, whatever their own mode, stay out of other users' reach.
import { chmod, lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
/** Bound on the entries visited (a PGlite data directory holds about a thousand). */
const MAX_ENTRIES = 100_000;

/** Creates `dir` if needed and makes it 0700. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(dir, PRIVATE_DIR_MODE);
}

/** Makes `dir` and everything below it owner-only: directories 0700, files 0600. Symbolic links are left alone. */
export async function restrictTree(dir: string): Promise<void> {
  await chmod(dir, PRIVATE_DIR_MODE);
  const pending = [dir];
  let visited = 0;
  while (pending.length > 0 && visited < MAX_ENTRIES) {
    const current = pending.pop()!;
    for (const entry of await readdir(current, { withFileTypes: true })) {
      visited += 1;
      const path = join(current, entry.name);
      if (entry.isDirectory()) {
        await chmod(path, PRIVATE_DIR_MODE);
        pending.push(path);
      } else if (entry.isFile() && ((await lstat(path)).mode & 0o777) !== PRIVATE_FILE_MODE) {
        await chmod(path, PRIVATE_FILE_MODE);
      }
    }
  }
}
