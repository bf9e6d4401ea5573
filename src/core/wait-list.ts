// The order in which waiting requests get to retry admission: highest priority first (0 = highest), first come first
// served within a priority, bounded in length. Pure: no clock, no timers (the engine's admission queue owns those).

/** One FIFO per priority level; `capacity` bounds the total across levels. */
export class PriorityWaitList<T> {
  /** Index = priority. Arrays with a moving head, compacted when half is spent, so shift() stays O(1) amortised. */
  private readonly levels: { items: (T | undefined)[]; head: number }[] = [];
  private count = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.count;
  }

  /** Appends `item` at `priority` (an integer >= 0); false when the list is full (the item is not added). */
  push(priority: number, item: T): boolean {
    if (this.count >= this.capacity) return false;
    while (this.levels.length <= priority) this.levels.push({ items: [], head: 0 });
    this.levels[priority]!.items.push(item);
    this.count++;
    return true;
  }

  /** The item that goes next: the oldest of the highest priority present; undefined when empty. */
  peek(): T | undefined {
    const level = this.firstLevel();
    return level === undefined ? undefined : level.items[level.head];
  }

  /** Removes and returns peek(). */
  shift(): T | undefined {
    const level = this.firstLevel();
    if (level === undefined) return undefined;
    const item = level.items[level.head];
    level.items[level.head] = undefined;
    level.head++;
    this.count--;
    this.compact(level);
    return item;
  }

  /** Removes `item` wherever it waits (a cancelled or expired wait); false when it is not in the list. */
  remove(priority: number, item: T): boolean {
    const level = this.levels[priority];
    if (level === undefined) return false;
    const at = level.items.indexOf(item, level.head);
    if (at < 0) return false;
    level.items.splice(at, 1);
    this.count--;
    return true;
  }

  /** Waiting items per priority level (index = priority), for metrics. */
  lengths(): number[] {
    return this.levels.map((level) => level.items.length - level.head);
  }

  private firstLevel(): { items: (T | undefined)[]; head: number } | undefined {
    if (this.count === 0) return undefined;
    for (const level of this.levels) if (level.items.length > level.head) return level;
    return undefined;
  }

  private compact(level: { items: (T | undefined)[]; head: number }): void {
    if (level.head === level.items.length) {
      level.items.length = 0;
      level.head = 0;
    } else if (level.head > 32 && level.head * 2 > level.items.length) {
      level.items.splice(0, level.head);
      level.head = 0;
    }
  }
}
