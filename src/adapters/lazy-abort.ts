// The "request gone" signal an adapter hands to engine.decide (DecideOptions.signal), created only when read. Only a
// decision that waits in the admission queue (queue.max_wait_ms) reads it, while an AbortController per request and
// its abort() (which builds a DOMException with a stack trace) cost about a tenth of an ext_proc stream's CPU at
// saturation (bench:profile). Every other request never allocates one.
import type { DecideOptions } from '../ports.js';

export class LazyAbort {
  private controller: AbortController | null = null;
  private aborted = false;

  /** The signal, aborted already when abort() came first. */
  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort();
    }
    return this.controller.signal;
  }

  /** Idempotent; free when nobody read the signal. */
  abort(): void {
    this.aborted = true;
    this.controller?.abort();
  }

  /** The options of a decision that leaves the admission queue when this aborts; the signal stays unbuilt until read. */
  decideOptions(onQueued: (maxWaitMs: number) => void): DecideOptions {
    const signal = (): AbortSignal => this.signal;
    return {
      get signal(): AbortSignal {
        return signal();
      },
      onQueued,
    };
  }
}
