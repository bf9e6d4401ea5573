// What a priority mapping's pattern may be, per match type. The one rule used by the matcher (which skips
// rows that fail it), the catalog's validation and the repository.
import type { MatchType } from '../types.js';
import { validateRegex } from './regex-safety.js';

export const MAX_PATTERN_LENGTH = 256;

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
