// The keypool plugin's config schema as Kong validates it (Lua patterns, lengths, choices), built from the catalog's
// rules so Kong, the codec (parseKongConfig) and the rest of keypool accept the same values. Pure data: the plugin
// entry (kong/plugins/keypool.cjs) require()s this module while Kong dumps the plugin list, so it must do nothing
// at load and import only pure modules.
import { STRATEGIES } from '../../core/types.js';
import { HEADER_NAME_MAX_CHARS, PROVIDER_SLUG_MAX_CHARS } from '../../catalog/rules.js';

/** Most client key headers one route may list. */
export const MAX_KEY_HEADERS = 8;

/**
 * Lua equivalents of PROVIDER_SLUG and HEADER_NAME (Kong checks `match` with string.find; Lua patterns have no
 * bounded repetition, so the length bounds are `len_max`, and "no trailing dash" is a `match_none`).
 * test/kong/guard.test.ts runs them under luajit against the regexes.
 */
const LUA_SLUG = '^[%l%d][%l%d%-]*$';
const LUA_TRAILING_DASH = '%-$';
const LUA_HEADER_NAME = '^[%l%d][%l%d_%-]*$';

export const KONG_PLUGIN_SCHEMA = [
  // Slug of the credential pool this route draws from (e.g. openai, anthropic). Required.
  {
    provider: {
      type: 'string',
      required: true,
      len_max: PROVIDER_SLUG_MAX_CHARS,
      match: LUA_SLUG,
      match_none: [{ pattern: LUA_TRAILING_DASH, err: 'provider must not end with "-"' }],
    },
  },
  // Overrides the pool's selection strategy on this route. Unset: the pool's own strategy.
  { strategy: { type: 'string', required: false, one_of: [...STRATEGIES] } },
  // Client headers that may carry the keypool key on this route. Unset: the server's default list.
  {
    key_headers: {
      type: 'array',
      required: false,
      len_min: 1,
      len_max: MAX_KEY_HEADERS,
      elements: { type: 'string', len_max: HEADER_NAME_MAX_CHARS, match: LUA_HEADER_NAME },
    },
  },
] as const;
