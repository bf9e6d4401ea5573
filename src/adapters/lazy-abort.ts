// The options an adapter hands to engine.decide (DecideOptions), with the "request gone" signal created only when
// read. Only a decision that waits in the admission queue (queue.max_wait_ms) reads it, while an AbortController per
// request and its abort() (which builds a DOMException with a stack trace) cost about a tenth of an ext_proc stream's
// CPU at saturation (bench:profile). Every other request never allocates one. A class (getter on the prototype): an
// object literal with a getter per request costs measurably more.
import type { DecideOptions } from '../ports.js';

export class LazyAbort implements DecideOptions {
  private controller: AbortController | null = null;
  private aborted = false;

  /** @param onQueued DecideOptions.onQueued: called once before the decision starts waiting. */
  constructor(readonly onQueued?: (maxWaitMs: number) => void) {}

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
}
