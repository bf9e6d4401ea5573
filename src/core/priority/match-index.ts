// The lookup structures over one set of mappings, and the precedence among the rules they hold:
// exact > longest prefix > longest suffix > longest contains > regex (created order, first match). Among
// patterns of the same kind and length that all match, the lowest priority number wins, then the earliest
// created, then the smallest id (so the result never depends on row order).
//
// Data structures, chosen so a lookup costs about O(key length) whatever the number of mappings:
// - exact: a Map.
// - prefix / suffix: radix (path-compressed) tries; the suffix trie is built over reversed patterns and
//   walked from the end of the key. One child lookup plus one startsWith per branching point.
// - contains: an Aho-Corasick automaton; one pass over the key finds every pattern occurring in it, so the
//   cost does not grow with the number of contains mappings.
// - regex: tried one by one, each validated as safe (see validatePattern) so none can hang the process.
import type { MatchType } from '../types.js';
import { AhoCorasick } from './aho-corasick.js';
import { preferred, type Entry } from './entry.js';
import { RadixTrie } from './radix-trie.js';
import { MAX_MATCH_INPUT, REGEX_FLAGS } from './regex-safety.js';

export class MatchIndex {
  readonly size: number;
  readonly #exact = new Map<string, Entry>();
  readonly #prefixes: RadixTrie | null;
  readonly #suffixes: RadixTrie | null;
  readonly #contains: AhoCorasick | null;
  readonly #regexes: ReadonlyArray<{ readonly regex: RegExp; readonly entry: Entry }>;

  constructor(entries: readonly Entry[]) {
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

  /** The winning entry for a key, or null when none matches. */
  match(key: string): Entry | null {
    if (this.size === 0) return null;
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

const KIND_RANK: Readonly<Record<MatchType, number>> = { exact: 0, prefix: 1, suffix: 2, contains: 3, regex: 4 };

/**
 * Whether `timed` (an open windowed rule) wins over `always` (a rule without a window), both matching the same key.
 * The usual precedence decides (kind, then pattern length); when that ties, the windowed rule wins, which is what
 * lets one pattern carry a windowed rule and an always-on fallback.
 */
export function timedWins(timed: Entry, always: Entry): boolean {
  const kind = KIND_RANK[timed.matchType] - KIND_RANK[always.matchType];
  if (kind !== 0) return kind < 0;
  if (timed.matchType === 'exact' || timed.matchType === 'regex') return true;
  return timed.pattern.length >= always.pattern.length;
}
