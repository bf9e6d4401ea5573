// Ties every in-flight slot to a request keypool can see alive (an Envoy ext_proc stream; a Kong request between its
// access and log phases). While a request holds a ticket (from its allow until its release), the keeper renews the ticket's lease every engine.renewIntervalMs (a third of the lease), so a long
// upstream wait or a long streamed body keeps its slot however short the lease is; and it asks the stream whether it
// is still alive, so a stream that died without any event reaching keypool (a peer reset grpc-js did not report) is
// closed within one interval: its slot comes back and its memory goes. A crashed replica renews nothing, so its
// slots come back one lease after its last renewal.
//
// One timer per engine for every stream (not one per stream). It starts with the first held ticket and stops at the
// first tick that finds none, not at every release: at one request at a time that would create and clear a timer per
// request.
import type { DecisionEngine, Ticket } from '../ports.js';

/** A request holding a ticket, as the keeper sees it. */
export interface HeldTicket {
  readonly ticket: Ticket;
  /** False once the stream is gone (cancelled, reset, destroyed), even if no event said so. */
  isAlive(): boolean;
  /** Called once when isAlive() turned false: close the stream and release the ticket. */
  onDead(): void;
}

const keepers = new WeakMap<DecisionEngine, LeaseKeeper>();

export class LeaseKeeper {
  private readonly held = new Set<HeldTicket>();
  private timer: NodeJS.Timeout | undefined;

  private constructor(private readonly engine: DecisionEngine) {}

  /** The keeper of `engine`'s tickets (created on first use). */
  static of(engine: DecisionEngine): LeaseKeeper {
    let keeper = keepers.get(engine);
    if (keeper === undefined) {
      keeper = new LeaseKeeper(engine);
      keepers.set(engine, keeper);
    }
    return keeper;
  }

  /** Streams holding a ticket now. */
  get size(): number {
    return this.held.size;
  }

  hold(entry: HeldTicket): void {
    this.held.add(entry);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), this.engine.renewIntervalMs);
      // Never what keeps a process alive: a stopping server releases its streams itself.
      this.timer.unref();
    }
  }

  drop(entry: HeldTicket): void {
    this.held.delete(entry);
  }

  private tick(): void {
    if (this.held.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    for (const entry of [...this.held]) {
      if (entry.isAlive()) {
        this.engine.renew(entry.ticket);
        continue;
      }
      this.drop(entry);
      entry.onDead();
    }
  }
}
