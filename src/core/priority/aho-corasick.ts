// Aho-Corasick automaton for contains mappings: one pass over the key finds every pattern occurring in it.
import { preferLonger, preferred, type Entry } from './entry.js';


/**
 * Transition-table cells (Int32) the dense part of the automaton may use: 1M cells = 4 MB, i.e. every
 * state up to depth 2-3 with a 62-character alphabet. Random text spends nearly all its steps there;
 * deeper states use a sorted child list and failure links.
 */
const DENSE_TRANSITION_BUDGET = 1024 * 1024;

/**
 * Aho-Corasick automaton over UTF-16 code units, laid out in flat typed arrays (no object per state):
 * - states are numbered breadth-first, built level by level from the sorted patterns, so the children of a
 *   state are contiguous and sorted by code unit (childStart/childCount/edgeCode);
 * - the alphabet is compacted to the characters that occur in some pattern (index 0 = any other
 *   character, which always leads back to the root);
 * - the first `denseStates` states get a full row of precomputed transitions (goto or failure already
 *   resolved), so a search step there is one table read; deeper states search their child list and fall
 *   back along failure links until a dense state answers;
 * - each state knows the best pattern ending there, including through failure links, so no output chain
 *   is walked at search time.
 */
export class AhoCorasick {
  readonly #alphabetSize: number;
  readonly #asciiIndex = new Int32Array(128);
  readonly #otherIndex = new Map<number, number>();
  readonly #denseStates: number;
  /** Uint16 while state ids fit (typical), halving the table so more of it stays in cache. */
  readonly #dense: Uint16Array | Int32Array;
  readonly #childStart: Int32Array;
  readonly #childCount: Int32Array;
  readonly #edgeCode: Uint16Array;
  readonly #fail: Int32Array;
  readonly #best: Array<Entry | null>;

  constructor(entries: readonly Entry[]) {
    const bestByPattern = new Map<string, Entry>();
    for (const entry of entries) bestByPattern.set(entry.pattern, preferred(bestByPattern.get(entry.pattern) ?? null, entry));
    const patterns = [...bestByPattern.keys()].sort();
    this.#alphabetSize = this.#indexAlphabet(patterns);
    let capacity = 1;
    for (const pattern of patterns) capacity += pattern.length;
    this.#childStart = new Int32Array(capacity);
    this.#childCount = new Int32Array(capacity);
    this.#edgeCode = new Uint16Array(capacity);
    this.#fail = new Int32Array(capacity);
    this.#best = new Array<Entry | null>(capacity).fill(null);
    const stateCount = this.#buildLevels(patterns, bestByPattern);
    this.#denseStates = Math.min(stateCount, Math.max(1, Math.floor(DENSE_TRANSITION_BUDGET / this.#alphabetSize)));
    const cells = this.#denseStates * this.#alphabetSize;
    this.#dense = stateCount <= 0xffff ? new Uint16Array(cells) : new Int32Array(cells);
    this.#link(stateCount);
  }

  /** The longest contained pattern (ties: outranks), or null. */
  bestIn(key: string): Entry | null {
    const best = this.#best;
    const dense = this.#dense;
    const asciiIndex = this.#asciiIndex;
    const denseStates = this.#denseStates;
    const alphabetSize = this.#alphabetSize;
    let state = 0;
    let found: Entry | null = null;
    for (let index = 0; index < key.length; index++) {
      const code = key.charCodeAt(index);
      state =
        state < denseStates && code < 128
          ? (dense[state * alphabetSize + (asciiIndex[code] as number)] as number)
          : this.#step(state, code);
      const candidate = best[state];
      if (candidate != null && candidate !== found) found = preferLonger(found, candidate);
    }
    return found;
  }

  #indexAlphabet(patterns: readonly string[]): number {
    let size = 1;
    for (const pattern of patterns) {
      for (let index = 0; index < pattern.length; index++) {
        const code = pattern.charCodeAt(index);
        if (this.#alphabetIndex(code) !== 0) continue;
        if (code < 128) this.#asciiIndex[code] = size++;
        else this.#otherIndex.set(code, size++);
      }
    }
    return size;
  }

  /**
   * Builds the trie breadth-first: the states of depth d+1 are the distinct length-(d+1) prefixes, in
   * sorted order, which groups them by parent (a depth-d state) in parent order. Returns the state count.
   */
  #buildLevels(patterns: readonly string[], bestByPattern: ReadonlyMap<string, Entry>): number {
    let active = patterns.map((pattern) => ({ pattern, state: 0 }));
    let stateCount = 1;
    for (let depth = 0; active.length > 0; depth++) {
      let lastParent = -1;
      let lastCode = -1;
      for (const item of active) {
        const code = item.pattern.charCodeAt(depth);
        if (item.state !== lastParent || code !== lastCode) {
          if (this.#childCount[item.state] === 0) this.#childStart[item.state] = stateCount;
          this.#childCount[item.state] = (this.#childCount[item.state] ?? 0) + 1;
          this.#edgeCode[stateCount] = code;
          lastParent = item.state;
          lastCode = code;
          stateCount++;
        }
        item.state = stateCount - 1;
        if (item.pattern.length === depth + 1) this.#best[item.state] = bestByPattern.get(item.pattern) ?? null;
      }
      active = active.filter((item) => item.pattern.length > depth + 1);
    }
    return stateCount;
  }

  /** Failure links, dense rows and inherited best outputs, in breadth-first (= numeric) order. */
  #link(stateCount: number): void {
    for (let state = 0; state < stateCount; state++) {
      const failState = this.#fail[state] as number;
      if (state !== 0) this.#best[state] = preferLonger(this.#best[state] ?? null, this.#best[failState] ?? null);
      const first = this.#childStart[state] as number;
      const last = first + (this.#childCount[state] as number);
      // A child's failure target is shallower than the child, hence already complete.
      for (let child = first; child < last; child++) {
        this.#fail[child] = state === 0 ? 0 : this.#step(failState, this.#edgeCode[child] as number);
      }
      if (state < this.#denseStates) this.#fillDenseRow(state, failState, first, last);
    }
  }

  #fillDenseRow(state: number, failState: number, firstChild: number, lastChild: number): void {
    const rowStart = state * this.#alphabetSize;
    if (state !== 0) {
      // Missing edges behave like the failure state's transitions (already final: it is shallower).
      const failStart = failState * this.#alphabetSize;
      this.#dense.copyWithin(rowStart, failStart, failStart + this.#alphabetSize);
    }
    for (let child = firstChild; child < lastChild; child++) {
      this.#dense[rowStart + this.#alphabetIndex(this.#edgeCode[child] as number)] = child;
    }
  }

  /** One transition from any state (dense or not). */
  #step(state: number, code: number): number {
    let current = state;
    while (current >= this.#denseStates) {
      const child = this.#child(current, code);
      if (child !== -1) return child;
      current = this.#fail[current] as number;
    }
    return this.#dense[current * this.#alphabetSize + this.#alphabetIndex(code)] as number;
  }

  /** Binary search of a state's sorted child list. */
  #child(state: number, code: number): number {
    let low = this.#childStart[state] as number;
    let high = low + (this.#childCount[state] as number) - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const middleCode = this.#edgeCode[middle] as number;
      if (middleCode === code) return middle;
      if (middleCode < code) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  #alphabetIndex(code: number): number {
    return code < 128 ? (this.#asciiIndex[code] as number) : (this.#otherIndex.get(code) ?? 0);
  }
}
