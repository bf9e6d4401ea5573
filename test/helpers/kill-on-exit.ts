// Child processes a test worker starts (keypool replicas, redis-server nodes) must not outlive it: a worker that dies
// (test timeout, crash) SIGKILLs whatever it still tracks when its process exits.
import type { ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Tracks `child` until it exits; SIGKILLs it if the test worker exits first. */
export function killOnExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const alive of live) alive.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}
