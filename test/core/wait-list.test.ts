// The admission queue's order: highest priority first (0 = highest), first come first served within a priority,
// bounded, and a removed (cancelled) entry never comes out.
import { describe, expect, it } from 'vitest';
import { PriorityWaitList } from '../../src/core/wait-list.js';

function drain<T>(list: PriorityWaitList<T>): T[] {
  const out: T[] = [];
  for (let item = list.shift(); item !== undefined; item = list.shift()) out.push(item);
  return out;
}

describe('PriorityWaitList', () => {
  it.each<[string, Array<[number, string]>, string[]]>([
    ['one priority: first come first served', [[7, 'a'], [7, 'b'], [7, 'c']], ['a', 'b', 'c']],
    ['a later P0 goes before an earlier P7', [[7, 'p7'], [0, 'p0']], ['p0', 'p7']],
    [
      'priority first, FIFO within each',
      [[5, 'a5'], [9, 'a9'], [0, 'a0'], [5, 'b5'], [0, 'b0'], [9, 'b9'], [3, 'a3']],
      ['a0', 'b0', 'a3', 'a5', 'b5', 'a9', 'b9'],
    ],
  ])('%s', (_name, pushes, expected) => {
    const list = new PriorityWaitList<string>(100);
    for (const [priority, item] of pushes) expect(list.push(priority, item)).toBe(true);
    expect(list.size).toBe(pushes.length);
    expect(list.peek()).toBe(expected[0]);
    expect(drain(list)).toEqual(expected);
    expect(list.size).toBe(0);
    expect(list.peek()).toBeUndefined();
  });

  it('is bounded: a push past the capacity is refused and changes nothing', () => {
    const list = new PriorityWaitList<string>(2);
    expect(list.push(7, 'a')).toBe(true);
    expect(list.push(7, 'b')).toBe(true);
    expect(list.push(0, 'urgent')).toBe(false);
    expect(list.size).toBe(2);
    expect(drain(list)).toEqual(['a', 'b']);
    expect(list.push(0, 'urgent')).toBe(true); // room again once drained
  });

  it('a removed entry (cancelled wait) leaves at once, from the head or the middle, and frees its place', () => {
    const list = new PriorityWaitList<string>(3);
    list.push(7, 'a');
    list.push(7, 'b');
    list.push(0, 'c');
    expect(list.remove(0, 'c')).toBe(true); // the head
    expect(list.peek()).toBe('a');
    expect(list.remove(7, 'b')).toBe(true); // the middle
    expect(list.remove(7, 'b')).toBe(false); // already gone
    expect(list.remove(3, 'a')).toBe(false); // not at that priority
    expect(list.lengths()).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    expect(list.push(1, 'd')).toBe(true);
    expect(list.push(1, 'e')).toBe(true);
    expect(drain(list)).toEqual(['d', 'e', 'a']);
  });

  it('keeps FIFO order across many pushes and shifts (its storage compacts as it goes)', () => {
    const list = new PriorityWaitList<number>(10_000);
    const out: number[] = [];
    for (let i = 0; i < 1000; i++) {
      list.push(4, i);
      if (i % 3 === 0) out.push(list.shift()!);
    }
    out.push(...drain(list));
    expect(out).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});
