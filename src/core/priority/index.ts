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
import type { MatchType, PriorityMatcher, PriorityResolution, PrioritySettings } from '../types.js';
import { AhoCorasick } from './aho-corasick.js';
import { preferred, type Entry } from './entry.js';
import { validatePattern } from './pattern.js';
import { RadixTrie } from './radix-trie.js';
import { MAX_MATCH_INPUT, REGEX_FLAGS } from './regex-safety.js';

export { MAX_PATTERN_LENGTH, validatePattern } from './pattern.js';
export { MAX_MATCH_INPUT, MAX_REGEX_COST, MAX_REGEX_REPEAT } from './regex-safety.js';

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
