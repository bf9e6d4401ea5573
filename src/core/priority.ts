// Priority mappings: operator patterns matched against the presented client key to give a request its
// priority (0 = highest) and tenant. Compiled once per snapshot; resolve() runs on every request.
//
// Precedence: exact > longest prefix > longest suffix > longest contains > regex (created order, first
// match) > default. Among patterns of the same kind and length that all match, the lowest priority number
// wins, then the earliest created, then the smallest id (so the result never depends on row order).
//
// Data structures, chosen so a lookup costs about O(key length) whatever the number of mappings:
// - exact: a Map.
// - prefix / suffix: radix (path-compressed) tries; the suffix trie is built over reversed patterns and
//   walked from the end of the key. One child lookup plus one startsWith per branching point.
// - contains: an Aho-Corasick automaton; one pass over the key finds every pattern occurring in it, so the
//   cost does not grow with the number of contains mappings.
// - regex: tried one by one, each validated as safe (see validatePattern) so none can hang the process.
import type { MatchType, PriorityMatcher, PriorityResolution, PrioritySettings } from './types.js';

export interface MappingInput {
  readonly id: string;
  readonly pattern: string;
  readonly matchType: MatchType;
  /** 0 is the highest priority. */
  readonly priority: number;
  readonly tenantId: string | null;
  readonly tenantName: string | null;
  /** Disabled mappings are kept in the database but ignored by the matcher. */
  readonly enabled: boolean;
  /** Orders regex mappings (first created is tried first) and breaks ties. */
  readonly createdAtMs: number;
}

export const MAX_PATTERN_LENGTH = 256;
/** Longest input a pattern is matched against: keys over 512 bytes are refused before matching. */
export const MAX_MATCH_INPUT = 512;
/** Largest repetition bound ({n}, {n,}, {n,m}) a regex may use. */
export const MAX_REGEX_REPEAT = 100;
/**
 * Worst-case backtracking budget of one regex on a MAX_MATCH_INPUT-long input, in the cost model of
 * validateRegex. 512 * 512: one free-floating wildcard (`team-.*-prod`), or two in an anchored pattern
 * (`^team-.*-prod-.*x`), stays well under a millisecond on the worst 512-byte input.
 */
export const MAX_REGEX_COST = MAX_MATCH_INPUT * MAX_MATCH_INPUT;

/** Regexes are compiled with the `u` flag only (strict syntax, no legacy escapes); never `g`/`y` (stateful). */
const REGEX_FLAGS = 'u';

/** Why an explanation matched (admin "resolve" endpoint). */
export interface PriorityExplanation {
  readonly resolution: PriorityResolution;
  /** null when the default applied. */
  readonly matchType: MatchType | null;
  readonly pattern: string | null;
}

export interface SkippedMapping {
  readonly id: string;
  readonly error: string;
}

export interface CompiledPriority extends PriorityMatcher {
  /** Like resolve, also naming the rule that matched. */
  explain(presentedKey: string): PriorityExplanation;
  /** Enabled mappings left out because their pattern is invalid (rows written before validation tightened). */
  readonly skipped: readonly SkippedMapping[];
  /** Number of mappings in use. */
  readonly size: number;
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/** Returns why a pattern is refused, or null when it is acceptable. */
export function validatePattern(matchType: MatchType, pattern: string): string | null {
  if (typeof pattern !== 'string' || pattern.length === 0) return 'pattern must not be empty';
  if (pattern.length > MAX_PATTERN_LENGTH) return `pattern must be at most ${MAX_PATTERN_LENGTH} characters`;
  if (CONTROL_CHARACTER.test(pattern)) return 'pattern must not contain control characters';
  if (matchType === 'regex') return validateRegex(pattern);
  if (matchType === 'exact' || matchType === 'prefix' || matchType === 'suffix' || matchType === 'contains') return null;
  return `unknown match type: ${String(matchType)}`;
}

/**
 * Regex safety rule (static; the pattern is refused at write time, never run in a sandbox):
 *  1. It must compile with the `u` flag.
 *  2. No backreferences (`\1`, `\k<name>`) and no lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`).
 *  3. Repetition bounds ({n}, {n,}, {n,m}) at most 100.
 *  4. A repeating quantifier (`*`, `+`, `{n,m}` with m > 1) may apply to a character, a class, `.` or a
 *     group that itself contains no quantifier and no alternation. This refuses every nested-quantifier
 *     shape behind exponential backtracking: `(a+)+`, `(a*)*`, `(a|a)*`, `(a|aa)+`, `(.*a){20}`.
 *     (`?` on a group is not repetition: `(dev|prod)?` and `(-\w+)?` are allowed.)
 *  5. Polynomial backtracking (`.*a.*b.*c`, `\w+\w+$` on a 512-byte key) is bounded by a cost model:
 *     cost = (512 unless the pattern starts with `^` outside any alternation) x product over terms of
 *     their choices (unbounded quantifier 512, {n,m} m-n+1, `?` 2, alternation = sum of its branches),
 *     where the last term of a top-level branch counts 1 (nothing after it can fail and force a retry).
 *     The cost must be at most MAX_REGEX_COST (512 * 512).
 * Rationale: V8 has no linear-time engine without a process flag, and keys are at most 512 bytes, so a
 * bounded worst case is enough; a safe alternative almost always exists (`[ab]*` for `(a|b)*`, a
 * `contains` mapping for `.*x.*`, or anchoring with `^`).
 */
function validateRegex(pattern: string): string | null {
  try {
    new RegExp(pattern, REGEX_FLAGS);
  } catch (error) {
    return `invalid regular expression: ${error instanceof Error ? error.message : String(error)}`;
  }
  const scanner = new RegexShapeScanner(pattern);
  const shape = scanner.scanPattern();
  if (scanner.error !== null) return scanner.error;
  const anchored = pattern.startsWith('^') && shape.topLevelBranches === 1;
  const cost = (anchored ? 1 : MAX_MATCH_INPUT) * shape.cost;
  if (cost > MAX_REGEX_COST) {
    return 'regular expression could backtrack too much (several open-ended repetitions); anchor it with ^, merge wildcards or use a contains/prefix/suffix mapping';
  }
  return null;
}

interface RegexShape {
  /** Worst-case number of ways this part can match (backtracking choices). */
  readonly cost: number;
  readonly hasQuantifier: boolean;
  readonly hasAlternation: boolean;
}

interface TermShape extends RegexShape {
  readonly isGroup: boolean;
  readonly repeats: boolean;
}

const ATOM: TermShape = { cost: 1, hasQuantifier: false, hasAlternation: false, isGroup: false, repeats: false };
const BRACED_QUANTIFIER = /\{(\d+)(?:(,)(\d*))?\}/y;

/**
 * Walks a pattern that already compiled with the `u` flag (so its syntax is known to be valid) and
 * measures what the safety rule needs. Records the first violation in `error` and stops descending.
 */
class RegexShapeScanner {
  error: string | null = null;
  #position = 0;
  readonly #source: string;

  constructor(source: string) {
    this.#source = source;
  }

  scanPattern(): RegexShape & { readonly topLevelBranches: number } {
    const branches = this.#disjunction(true);
    return { ...branches, topLevelBranches: branches.branchCount };
  }

  #disjunction(topLevel: boolean): RegexShape & { readonly branchCount: number } {
    let cost = 0;
    let hasQuantifier = false;
    let branchCount = 0;
    for (;;) {
      const branch = this.#alternative(topLevel);
      cost += branch.cost;
      hasQuantifier ||= branch.hasQuantifier;
      branchCount++;
      if (this.error !== null || this.#source[this.#position] !== '|') break;
      this.#position++;
    }
    return { cost, hasQuantifier, hasAlternation: branchCount > 1, branchCount };
  }

  #alternative(topLevel: boolean): RegexShape {
    let cost = 1;
    let hasQuantifier = false;
    let hasAlternation = false;
    while (this.error === null && this.#position < this.#source.length) {
      const next = this.#source[this.#position];
      if (next === '|' || next === ')') break;
      const term = this.#term();
      const endsPattern = topLevel && (this.#position >= this.#source.length || this.#source[this.#position] === '|');
      // A branch's final open-ended term cannot be forced to give characters back: nothing after it can fail.
      cost *= endsPattern && term.repeats ? 1 : term.cost;
      hasQuantifier ||= term.hasQuantifier;
      hasAlternation ||= term.hasAlternation;
    }
    return { cost, hasQuantifier, hasAlternation };
  }

  #term(): TermShape {
    const atom = this.#atom();
    if (this.error !== null) return atom;
    const quantifier = this.#quantifier();
    if (quantifier === null) return atom;
    const { min, max } = quantifier;
    if (min > MAX_REGEX_REPEAT || (max !== Infinity && max > MAX_REGEX_REPEAT)) {
      this.error = `repetition bounds must be at most ${MAX_REGEX_REPEAT}`;
      return atom;
    }
    const repeats = max > 1;
    if (repeats && atom.isGroup && (atom.hasQuantifier || atom.hasAlternation)) {
      this.error = 'a repeated group must not contain quantifiers or alternation (nested repetition can hang)';
      return atom;
    }
    const choices = repeats ? Math.max(1, Math.min(max, MAX_MATCH_INPUT) - min + (max === Infinity ? 0 : 1)) : 1;
    const cost = repeats ? choices * atom.cost : atom.cost + (min === 0 ? 1 : 0);
    return { cost, hasQuantifier: true, hasAlternation: atom.hasAlternation, isGroup: atom.isGroup, repeats };
  }

  #atom(): TermShape {
    const source = this.#source;
    const character = source[this.#position];
    if (character === '(') return this.#group();
    if (character === '[') {
      this.#skipClass();
      return ATOM;
    }
    if (character === '\\') {
      this.#skipEscape();
      return ATOM;
    }
    const codePoint = source.codePointAt(this.#position) ?? 0;
    this.#position += codePoint > 0xffff ? 2 : 1;
    return ATOM;
  }

  #group(): TermShape {
    const source = this.#source;
    this.#position++;
    if (source.startsWith('?=', this.#position) || source.startsWith('?!', this.#position) ||
        source.startsWith('?<=', this.#position) || source.startsWith('?<!', this.#position)) {
      this.error = 'lookahead and lookbehind are not allowed';
      return ATOM;
    }
    if (source.startsWith('?:', this.#position)) {
      this.#position += 2;
    } else if (source.startsWith('?<', this.#position)) {
      this.#position = source.indexOf('>', this.#position) + 1;
    } else if (source[this.#position] === '?') {
      this.error = 'unsupported group syntax';
      return ATOM;
    }
    const inner = this.#disjunction(false);
    this.#position++; // the closing parenthesis (guaranteed by the successful compile)
    return { ...inner, isGroup: true, repeats: false };
  }

  #skipClass(): void {
    const source = this.#source;
    this.#position++;
    while (this.#position < source.length && source[this.#position] !== ']') {
      // An escape is two code units here; `]` cannot occur inside \u{...} or \p{...}.
      this.#position += source[this.#position] === '\\' ? 2 : 1;
    }
    this.#position++;
  }

  #skipEscape(): void {
    const source = this.#source;
    const escaped = source[this.#position + 1] ?? '';
    if (/[1-9]/.test(escaped) || escaped === 'k') {
      this.error = 'backreferences are not allowed';
      return;
    }
    if ((escaped === 'p' || escaped === 'P' || escaped === 'u') && source[this.#position + 2] === '{') {
      this.#position = source.indexOf('}', this.#position) + 1;
      return;
    }
    const lengths: Readonly<Record<string, number>> = { x: 4, u: 6, c: 3 };
    this.#position += lengths[escaped] ?? 2;
  }

  #quantifier(): { readonly min: number; readonly max: number } | null {
    const source = this.#source;
    const character = source[this.#position];
    let bounds: { min: number; max: number } | null = null;
    if (character === '*') bounds = { min: 0, max: Infinity };
    else if (character === '+') bounds = { min: 1, max: Infinity };
    else if (character === '?') bounds = { min: 0, max: 1 };
    if (bounds !== null) {
      this.#position++;
    } else if (character === '{') {
      BRACED_QUANTIFIER.lastIndex = this.#position;
      const match = BRACED_QUANTIFIER.exec(source);
      if (match === null) return null; // unreachable after a u-flag compile
      const min = Number(match[1]);
      const max = match[2] === undefined ? min : match[3] === '' || match[3] === undefined ? Infinity : Number(match[3]);
      bounds = { min, max };
      this.#position = BRACED_QUANTIFIER.lastIndex;
    } else {
      return null;
    }
    if (source[this.#position] === '?') this.#position++; // lazy: same worst case as greedy
    return bounds;
  }
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

interface Entry {
  readonly id: string;
  readonly pattern: string;
  readonly matchType: MatchType;
  readonly priority: number;
  readonly createdAtMs: number;
  readonly resolution: PriorityResolution;
}

/** True when a should win over b among equally specific matches. */
function outranks(a: Entry, b: Entry): boolean {
  if (a.priority !== b.priority) return a.priority < b.priority;
  if (a.createdAtMs !== b.createdAtMs) return a.createdAtMs < b.createdAtMs;
  return a.id < b.id;
}

function preferred(current: Entry | null, candidate: Entry): Entry {
  return current === null || outranks(candidate, current) ? candidate : current;
}

/** Among matches of different lengths the longer wins; equal lengths fall back to outranks. */
function preferLonger(current: Entry | null, candidate: Entry | null): Entry | null {
  if (candidate === null) return current;
  if (current === null) return candidate;
  if (candidate.pattern.length !== current.pattern.length) {
    return candidate.pattern.length > current.pattern.length ? candidate : current;
  }
  return outranks(candidate, current) ? candidate : current;
}

/** Compiles the mappings of one snapshot. Disabled settings give a matcher that always returns the default. */
export function compilePriority(mappings: readonly MappingInput[], settings: PrioritySettings): CompiledPriority {
  const defaultResolution: PriorityResolution = Object.freeze({
    priority: settings.defaultPriority,
    tenantId: null,
    tenantName: null,
    mappingId: null,
  });
  if (!settings.enabled) return new PriorityIndex(defaultResolution, [], []);
  const entries: Entry[] = [];
  const skipped: SkippedMapping[] = [];
  for (const mapping of mappings) {
    if (!mapping.enabled) continue;
    const error = validatePattern(mapping.matchType, mapping.pattern);
    if (error === null) entries.push(toEntry(mapping));
    else skipped.push({ id: mapping.id, error });
  }
  return new PriorityIndex(defaultResolution, entries, skipped);
}

function toEntry(mapping: MappingInput): Entry {
  return {
    id: mapping.id,
    pattern: mapping.pattern,
    matchType: mapping.matchType,
    priority: mapping.priority,
    createdAtMs: mapping.createdAtMs,
    resolution: Object.freeze({
      priority: mapping.priority,
      tenantId: mapping.tenantId,
      tenantName: mapping.tenantName,
      mappingId: mapping.id,
    }),
  };
}

class PriorityIndex implements CompiledPriority {
  readonly skipped: readonly SkippedMapping[];
  readonly size: number;
  readonly #defaultResolution: PriorityResolution;
  readonly #exact = new Map<string, Entry>();
  readonly #prefixes: RadixTrie | null;
  readonly #suffixes: RadixTrie | null;
  readonly #contains: AhoCorasick | null;
  readonly #regexes: ReadonlyArray<{ readonly regex: RegExp; readonly entry: Entry }>;

  constructor(defaultResolution: PriorityResolution, entries: readonly Entry[], skipped: readonly SkippedMapping[]) {
    this.#defaultResolution = defaultResolution;
    this.skipped = Object.freeze([...skipped]);
    this.size = entries.length;
    const byType = (type: MatchType) => entries.filter((entry) => entry.matchType === type);
    for (const entry of byType('exact')) this.#exact.set(entry.pattern, preferred(this.#exact.get(entry.pattern) ?? null, entry));
    const prefixes = byType('prefix');
    const suffixes = byType('suffix');
    const contains = byType('contains');
    this.#prefixes = prefixes.length === 0 ? null : RadixTrie.forPrefixes(prefixes);
    this.#suffixes = suffixes.length === 0 ? null : RadixTrie.forSuffixes(suffixes);
    this.#contains = contains.length === 0 ? null : new AhoCorasick(contains);
    this.#regexes = byType('regex')
      .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((entry) => ({ regex: new RegExp(entry.pattern, REGEX_FLAGS), entry }));
  }

  resolve(presentedKey: string): PriorityResolution {
    return this.#match(presentedKey)?.resolution ?? this.#defaultResolution;
  }

  explain(presentedKey: string): PriorityExplanation {
    const entry = this.#match(presentedKey);
    if (entry === null) return { resolution: this.#defaultResolution, matchType: null, pattern: null };
    return { resolution: entry.resolution, matchType: entry.matchType, pattern: entry.pattern };
  }

  #match(key: string): Entry | null {
    if (typeof key !== 'string' || this.size === 0) return null;
    return (
      this.#exact.get(key) ??
      this.#prefixes?.longestPrefixOf(key) ??
      this.#suffixes?.longestSuffixOf(key) ??
      this.#contains?.bestIn(key) ??
      this.#firstRegexMatch(key)
    );
  }

  #firstRegexMatch(key: string): Entry | null {
    // The safety budget assumes inputs of at most MAX_MATCH_INPUT; longer ones never reach a regex.
    if (this.#regexes.length === 0 || key.length > MAX_MATCH_INPUT) return null;
    for (const { regex, entry } of this.#regexes) {
      if (regex.test(key)) return entry;
    }
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Radix trie (prefix, and suffix over reversed patterns)
// ---------------------------------------------------------------------------------------------

interface RadixNode {
  /** Edge label from the parent. In a suffix trie it is stored in key order (un-reversed) after build. */
  label: string;
  children: Map<number, RadixNode> | null;
  entry: Entry | null;
}

class RadixTrie {
  readonly #root: RadixNode;

  private constructor(root: RadixNode) {
    this.#root = root;
  }

  static forPrefixes(entries: readonly Entry[]): RadixTrie {
    const root = newNode('');
    for (const entry of entries) insert(root, entry.pattern, entry);
    return new RadixTrie(root);
  }

  static forSuffixes(entries: readonly Entry[]): RadixTrie {
    const root = newNode('');
    for (const entry of entries) insert(root, reverse(entry.pattern), entry);
    // Walking the key backwards, an edge is compared with key.startsWith(label, end - label.length):
    // flip every label back to key order once, so lookups never reverse anything.
    reverseLabels(root);
    return new RadixTrie(root);
  }

  longestPrefixOf(key: string): Entry | null {
    let node = this.#root;
    let best: Entry | null = null;
    let position = 0;
    while (position < key.length) {
      const child = node.children?.get(key.charCodeAt(position));
      if (child === undefined || !key.startsWith(child.label, position)) break;
      position += child.label.length;
      node = child;
      if (node.entry !== null) best = node.entry;
    }
    return best;
  }

  longestSuffixOf(key: string): Entry | null {
    let node = this.#root;
    let best: Entry | null = null;
    let end = key.length;
    while (end > 0) {
      const child = node.children?.get(key.charCodeAt(end - 1));
      if (child === undefined) break;
      const start = end - child.label.length;
      if (start < 0 || !key.startsWith(child.label, start)) break;
      end = start;
      node = child;
      if (node.entry !== null) best = node.entry;
    }
    return best;
  }
}

function newNode(label: string): RadixNode {
  return { label, children: null, entry: null };
}

function insert(root: RadixNode, text: string, entry: Entry): void {
  let node = root;
  let position = 0;
  for (;;) {
    if (position === text.length) {
      node.entry = preferred(node.entry, entry);
      return;
    }
    const firstCode = text.charCodeAt(position);
    node.children ??= new Map();
    const child = node.children.get(firstCode);
    if (child === undefined) {
      const leaf = newNode(text.slice(position));
      leaf.entry = entry;
      node.children.set(firstCode, leaf);
      return;
    }
    const common = commonPrefixLength(child.label, text, position);
    if (common < child.label.length) {
      // Split the edge: node -> middle(common part) -> child(rest).
      const middle = newNode(child.label.slice(0, common));
      child.label = child.label.slice(common);
      middle.children = new Map([[child.label.charCodeAt(0), child]]);
      node.children.set(firstCode, middle);
      node = middle;
    } else {
      node = child;
    }
    position += common;
  }
}

function commonPrefixLength(label: string, text: string, offset: number): number {
  const limit = Math.min(label.length, text.length - offset);
  let length = 0;
  while (length < limit && label.charCodeAt(length) === text.charCodeAt(offset + length)) length++;
  return length;
}

function reverseLabels(node: RadixNode): void {
  node.label = reverse(node.label);
  if (node.children === null) return;
  for (const child of node.children.values()) reverseLabels(child);
}

function reverse(text: string): string {
  let reversed = '';
  for (let index = text.length - 1; index >= 0; index--) reversed += text[index];
  return reversed;
}

// ---------------------------------------------------------------------------------------------
// Aho-Corasick (contains)
// ---------------------------------------------------------------------------------------------

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
class AhoCorasick {
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
