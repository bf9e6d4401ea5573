// The sliding window of admissions every rpm limit counts in (an account's, a key's or tenant's quota).
// Pure: no I/O, no clock.

/** Length of the RPM sliding window: in any WINDOW_MS interval at most rpmLimit admissions. */
export const WINDOW_MS = 60_000;

/**
 * Timestamps of recent admissions, oldest first, in a growable ring buffer (no allocation per admission once grown).
 * Kept monotonic: a timestamp earlier than the newest one (clock stepped back) is recorded as the newest one, which
 * keeps the window conservative.
 */
export class RequestLog {
  private buf: number[] = [];
  private head = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Oldest timestamp, or NaN when empty. */
  oldest(): number {
    return this.count === 0 ? Number.NaN : (this.buf[this.head] as number);
  }

  newest(): number {
    return this.count === 0 ? Number.NaN : (this.buf[(this.head + this.count - 1) % this.buf.length] as number);
  }

  /** Drops every timestamp <= cutoffMs. */
  prune(cutoffMs: number): void {
    const buf = this.buf;
    while (this.count > 0 && (buf[this.head] as number) <= cutoffMs) {
      this.head = this.head + 1 === buf.length ? 0 : this.head + 1;
      this.count--;
    }
  }

  /** Appends a timestamp; when `cap` entries are held, the oldest is dropped first. */
  push(tsMs: number, cap: number): void {
    if (this.count > 0) tsMs = Math.max(tsMs, this.newest());
    while (this.count > 0 && this.count >= cap) {
      this.head = this.head + 1 === this.buf.length ? 0 : this.head + 1;
      this.count--;
    }
    if (this.count === this.buf.length) this.grow(cap);
    this.buf[(this.head + this.count) % this.buf.length] = tsMs;
    this.count++;
  }

  private grow(cap: number): void {
    const next: number[] = new Array<number>(Math.max(this.count + 1, 4, Math.min(this.buf.length * 2, cap)));
    for (let i = 0; i < this.count; i++) next[i] = this.buf[(this.head + i) % this.buf.length] as number;
    this.buf = next;
    this.head = 0;
  }
}
