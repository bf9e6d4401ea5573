// A compiled mapping and the ranking rules shared by every matcher of the index.
import type { MatchType, PriorityResolution } from '../types.js';
import type { ActiveWindow } from './window.js';

export interface Entry {
  readonly id: string;
  readonly pattern: string;
  readonly matchType: MatchType;
  readonly priority: number;
  readonly createdAtMs: number;
  /** Set on rules that apply only while their window is open. */
  readonly window: ActiveWindow | null;
  readonly resolution: PriorityResolution;
}

/** True when a should win over b among equally specific matches. */
export function outranks(a: Entry, b: Entry): boolean {
  if (a.priority !== b.priority) return a.priority < b.priority;
  if (a.createdAtMs !== b.createdAtMs) return a.createdAtMs < b.createdAtMs;
  return a.id < b.id;
}

export function preferred(current: Entry | null, candidate: Entry): Entry {
  return current === null || outranks(candidate, current) ? candidate : current;
}

/** Among matches of different lengths the longer wins; equal lengths fall back to outranks. */
export function preferLonger(current: Entry | null, candidate: Entry | null): Entry | null {
  if (candidate === null) return current;
  if (current === null) return candidate;
  if (candidate.pattern.length !== current.pattern.length) {
    return candidate.pattern.length > current.pattern.length ? candidate : current;
  }
  return outranks(candidate, current) ? candidate : current;
}
