// Regex safety: a static rule that refuses, at write time, every regex mapping that could backtrack
// catastrophically on a client key of at most MAX_MATCH_INPUT characters. Nothing is run in a sandbox.

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
export const REGEX_FLAGS = 'u';

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
export function validateRegex(pattern: string): string | null {
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
