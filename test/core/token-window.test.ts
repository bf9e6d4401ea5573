import { describe, expect, it } from 'vitest';
import { WINDOW_MS } from '../../src/core/capacity.js';
import { reservedTokens, TOKEN_LOG_CAP, TokenLog, tokenBlock } from '../../src/core/token-window.js';

const T0 = 1_800_000_000_000;

/** A log holding [atMs, tokens] entries under ids e0, e1, ... */
function logOf(entries: ReadonlyArray<readonly [number, number]>): TokenLog {
  const log = new TokenLog();
  entries.forEach(([atMs, tokens], i) => log.add(`e${i}`, atMs, tokens));
  return log;
}

describe('tokenBlock', () => {
  // [entries, limit, tokens, nowMs, expected: undefined = room, number = frees at, null = never by itself]
  const cases: ReadonlyArray<[string, ReadonlyArray<readonly [number, number]>, number, number, number, number | null | undefined]> = [
    ['empty window, fits', [], 1000, 1000, T0, undefined],
    ['exactly the limit fits', [[T0, 600]], 1000, 400, T0 + 1, undefined],
    ['one over the limit waits for the oldest', [[T0, 600]], 1000, 401, T0 + 1, T0 + WINDOW_MS],
    ['needs the two oldest gone', [[T0, 300], [T0 + 10, 300], [T0 + 20, 400]], 1000, 500, T0 + 30, T0 + 10 + WINDOW_MS],
    ['entries past the window no longer count', [[T0, 1000]], 1000, 1000, T0 + WINDOW_MS, undefined],
    ['an entry exactly WINDOW_MS old has left', [[T0, 1000]], 1000, 1, T0 + WINDOW_MS, undefined],
    ['larger than the limit: never by itself', [], 1000, 1001, T0, null],
    ['larger than the limit even when the window is busy', [[T0, 10]], 1000, 2000, T0 + 1, null],
  ];
  it.each(cases)('%s', (_name, entries, limit, tokens, nowMs, expected) => {
    expect(tokenBlock(logOf(entries), limit, tokens, nowMs)).toBe(expected);
  });

  it('a full log (TOKEN_LOG_CAP entries) waits for its oldest entry even with tokens to spare', () => {
    const log = new TokenLog();
    for (let i = 0; i < TOKEN_LOG_CAP; i++) log.add(`e${i}`, T0 + i, 0);
    expect(tokenBlock(log, 1_000_000, 1, T0 + TOKEN_LOG_CAP)).toBe(T0 + WINDOW_MS);
  });
});

describe('TokenLog', () => {
  it('adjust moves an entry where it stands, never below 0, and an entry gone from the window stays gone', () => {
    const log = logOf([[T0, 500], [T0 + 1000, 300]]);
    expect(log.adjust('e0', -200)).toBe(true);
    expect(log.sum).toBe(600);
    expect(log.adjust('e1', -1000)).toBe(true);
    expect(log.tokensOf('e1')).toBe(0);
    expect(log.sum).toBe(300);
    // e0 keeps its position: it leaves at T0 + WINDOW_MS with its reconciled figure.
    log.prune(T0 + WINDOW_MS - WINDOW_MS);
    expect(log.sum).toBe(0);
    expect(log.adjust('e0', 100)).toBe(false);
    expect(log.adjust('unknown', 100)).toBe(false);
    expect(log.sum).toBe(0);
  });

  it('keeps instants monotonic: an entry earlier than the newest (clock stepped back) counts as the newest', () => {
    const log = logOf([[T0 + 5000, 100], [T0, 100]]);
    log.prune(T0 + 4999);
    expect(log.sum).toBe(200);
    log.prune(T0 + 5000);
    expect(log.sum).toBe(0);
  });

  it('stays bounded: pruned entries are compacted away', () => {
    const log = new TokenLog();
    for (let i = 0; i < 50_000; i++) {
      log.add(`e${i}`, T0 + i, 1);
      log.prune(T0 + i - 100);
    }
    expect(log.size).toBe(100);
    expect(log.sum).toBe(100);
  });
});

describe('reservedTokens', () => {
  const cases: ReadonlyArray<[number | undefined, number]> = [
    [undefined, 0],
    [0, 0],
    [-5, 0],
    [Number.NaN, 0],
    [Number.POSITIVE_INFINITY, 0],
    [1, 1],
    [10.2, 11],
  ];
  it.each(cases)('%s -> %s', (input, expected) => {
    expect(reservedTokens(input)).toBe(expected);
  });
});
