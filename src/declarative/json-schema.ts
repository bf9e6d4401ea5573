// The JSON Schema of keypool.yaml (draft-07), built from the same rules the parser applies (src/catalog/rules.ts,
// the field tables in ./model.ts), so editors can complete and check a file. schema/keypool.schema.json is this
// object written out; test/declarative/schema.test.ts keeps the two equal. The parser stays the authority: a few
// rules (regex safety, CIDR syntax, provider existence) are beyond a schema.
import { MAX_PATTERN_LENGTH } from '../core/priority/index.js';
import { MATCH_TYPES, STRATEGIES } from '../core/types.js';
import { TENANT_TYPES } from '../catalog/mappings/schema.js';
import { WINDOW_SYNTAX } from '../catalog/mappings/window.js';
import { SETTING_NAMES } from '../catalog/settings/schema.js';
import { MAX_USD_PER_MTOK, PRICE_MODEL_PATTERN, USD_DECIMAL_TEXT } from '../catalog/prices/schema.js';
import {
  IMPORTED_KEY_BYTES,
  KEY_PREFIX,
  LIMITS,
  MODEL_PATTERN,
  MODELS_MAX,
  PRIORITY_RANGE,
  PROVIDER_SLUG,
  QUEUE_MAX_LENGTH_RANGE,
  TOKENS_DEFAULT_OUTPUT_RANGE,
  QUEUE_MAX_WAIT_MS_RANGE,
  QUOTA_SCOPE,
  TENANT_ID,
  TIME_ZONE_NAME,
  WEEKDAYS,
  WINDOW_TIME,
} from '../catalog/rules.js';
import { FORMAT_VERSION } from './model.js';

const nullable = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: 'null' }] });
const int = (min: number, max: number) => ({ type: 'integer', minimum: min, maximum: max });
const name = { type: 'string', minLength: 1, maxLength: LIMITS.nameMaxChars };
const tenant = nullable({ type: 'string', pattern: TENANT_ID.source });

const secretRef = {
  description: 'Where the secret is read from at apply time; never the secret itself.',
  oneOf: [
    { type: 'object', properties: { env: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' } }, required: ['env'], additionalProperties: false },
    { type: 'object', properties: { file: { type: 'string', minLength: 1, maxLength: 4096 } }, required: ['file'], additionalProperties: false },
  ],
};

/** USD per million tokens: a number, or decimal text (`"0.075"`) kept exactly to 6 decimals. */
const usdPerMTok = (description: string) => ({
  description,
  anyOf: [
    { type: 'number', minimum: 0, maximum: MAX_USD_PER_MTOK },
    { type: 'string', pattern: USD_DECIMAL_TEXT.source },
  ],
});

export function keypoolJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'keypool.yaml',
    description: 'Declarative keypool configuration (`keypool apply -f`). A section left out is not managed by the file.',
    type: 'object',
    additionalProperties: false,
    properties: {
      version: { const: FORMAT_VERSION },
      providers: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['slug', 'strategy'],
          properties: {
            slug: { type: 'string', pattern: PROVIDER_SLUG.source },
            strategy: { enum: [...STRATEGIES] },
            per_model_state: {
              type: 'boolean',
              description: 'Per-model provider state for every request (the request body is read for its model); default false',
            },
          },
        },
      },
      accounts: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['provider', 'name'],
          properties: {
            provider: { type: 'string', pattern: PROVIDER_SLUG.source },
            name,
            key: secretRef,
            weight: int(LIMITS.weightMin, LIMITS.weightMax),
            tier: int(LIMITS.tierMin, LIMITS.tierMax),
            rpm: nullable(int(LIMITS.limitMin, LIMITS.limitMax)),
            tpm: nullable(int(LIMITS.limitMin, LIMITS.limitMax)),
            max_concurrency: nullable(int(LIMITS.limitMin, LIMITS.limitMax)),
            tags: { type: 'object', maxProperties: LIMITS.tagsMaxKeys, additionalProperties: { type: ['string', 'number', 'boolean', 'null'] } },
            models: {
              type: 'array',
              maxItems: MODELS_MAX,
              description: 'Models the account may serve: exact names or prefix globs ending in one * (gpt-4o*); empty or absent = any.',
              items: { type: 'string', pattern: MODEL_PATTERN.source },
            },
            scope: {
              type: ['string', 'null'],
              pattern: QUOTA_SCOPE.source,
              description: 'Quota scope shared with sibling accounts (openai-org-acme/project-x); absent or null = its own scope.',
            },
            status: { enum: ['active', 'disabled'] },
          },
        },
      },
      keys: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name,
            tenant,
            allowed_ips: { type: 'array', maxItems: LIMITS.allowedIpsMax, items: { type: 'string' } },
            expires_at: nullable({ type: 'string', description: 'ISO 8601 date or date-time with a zone' }),
            rotate_after_days: nullable(int(LIMITS.rotateAfterDaysMin, LIMITS.rotateAfterDaysMax)),
            prefix: nullable({ type: 'string', pattern: KEY_PREFIX.source }),
            rpm: nullable({ ...int(LIMITS.limitMin, LIMITS.limitMax), description: 'requests per minute (sliding 60 s) of this key' }),
            rpd: nullable({ ...int(LIMITS.limitMin, LIMITS.limitMax), description: 'requests per day (KEYPOOL_QUOTA_TZ) of this key' }),
            tpm: nullable({ ...int(LIMITS.limitMin, LIMITS.limitMax), description: 'tokens per minute (sliding 60 s; estimates reserved, then reconciled) of this key' }),
            tpd: nullable({ ...int(LIMITS.limitMin, LIMITS.tokenDayLimitMax), description: 'tokens per day (KEYPOOL_QUOTA_TZ) of this key' }),
            status: { enum: ['active', 'revoked'] },
            import: { ...secretRef, description: `An existing key (${IMPORTED_KEY_BYTES.min}-${IMPORTED_KEY_BYTES.max} bytes) to store by digest.` },
          },
        },
      },
      mappings: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['match', 'pattern', 'priority'],
          properties: {
            match: { enum: [...MATCH_TYPES] },
            pattern: { type: 'string', minLength: 1, maxLength: MAX_PATTERN_LENGTH },
            priority: int(PRIORITY_RANGE.min, PRIORITY_RANGE.max),
            tenant,
            tenant_name: nullable(name),
            tenant_type: nullable({ enum: [...TENANT_TYPES] }),
            description: nullable({ type: 'string', maxLength: LIMITS.descriptionMaxChars }),
            enabled: { type: 'boolean' },
            window: {
              description:
                'Apply only while this window is open; outside it the next matching rule applies. Days name the day the ' +
                'window starts (end < start crosses midnight); times are the zone\'s wall clock. Part of the identity.',
              anyOf: [
                {
                  type: 'object',
                  additionalProperties: false,
                  required: ['days', 'start', 'end', 'timezone'],
                  properties: {
                    days: { type: 'array', minItems: 1, items: { enum: [...WEEKDAYS] } },
                    start: { type: 'string', pattern: WINDOW_TIME.source },
                    end: { type: 'string', pattern: WINDOW_TIME.source },
                    timezone: { type: 'string', pattern: TIME_ZONE_NAME.source, description: "IANA zone from Intl.supportedValuesOf('timeZone'), or UTC" },
                  },
                },
                { type: 'string', description: WINDOW_SYNTAX },
                { type: 'null' },
              ],
            },
          },
        },
      },
      tenants: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['id'],
          properties: {
            id: { type: 'string', pattern: TENANT_ID.source },
            name,
            rpm: nullable({ ...int(LIMITS.limitMin, LIMITS.limitMax), description: 'requests per minute of all the tenant\'s keys together' }),
            rpd: nullable({ ...int(LIMITS.limitMin, LIMITS.limitMax), description: 'requests per day (KEYPOOL_QUOTA_TZ) of all the tenant\'s keys together' }),
            tpm: nullable({ ...int(LIMITS.limitMin, LIMITS.limitMax), description: 'tokens per minute of all the tenant\'s keys together' }),
            tpd: nullable({ ...int(LIMITS.limitMin, LIMITS.tokenDayLimitMax), description: 'tokens per day (KEYPOOL_QUOTA_TZ) of all the tenant\'s keys together' }),
          },
        },
      },
      prices: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['provider', 'model', 'input', 'output'],
          properties: {
            provider: { type: 'string', pattern: PROVIDER_SLUG.source, description: 'provider slug (need not exist yet)' },
            model: {
              type: 'string',
              pattern: PRICE_MODEL_PATTERN.source,
              description: 'model name as the provider reports it, a prefix ending in * (the longest wins), or * for every model',
            },
            input: usdPerMTok('USD per million input tokens'),
            output: usdPerMTok('USD per million output tokens'),
            cached_input: nullable(usdPerMTok('USD per million cached input tokens; absent or null = the input price')),
            cache_creation: nullable(usdPerMTok('USD per million cache-write input tokens; absent or null = the input price')),
          },
        },
      },
      settings: {
        type: 'object',
        additionalProperties: false,
        properties: {
          [SETTING_NAMES[0]]: { type: 'boolean' },
          [SETTING_NAMES[1]]: int(PRIORITY_RANGE.min, PRIORITY_RANGE.max),
          [SETTING_NAMES[2]]: {
            description: 'Fraction of an account\'s capacity each priority (index 0-9) leaves free for higher priorities.',
            oneOf: [
              { type: 'array', minItems: 10, maxItems: 10, items: { type: 'number', minimum: 0, exclusiveMaximum: 1 } },
              {
                type: 'object',
                additionalProperties: false,
                patternProperties: { '^[Pp]?[0-9]$': { type: 'number', minimum: 0, exclusiveMaximum: 1 } },
              },
            ],
          },
          [SETTING_NAMES[3]]: int(QUEUE_MAX_WAIT_MS_RANGE.min, QUEUE_MAX_WAIT_MS_RANGE.max),
          [SETTING_NAMES[4]]: int(QUEUE_MAX_LENGTH_RANGE.min, QUEUE_MAX_LENGTH_RANGE.max),
          [SETTING_NAMES[5]]: {
            ...int(TOKENS_DEFAULT_OUTPUT_RANGE.min, TOKENS_DEFAULT_OUTPUT_RANGE.max),
            description: 'Output tokens a request reserves (exact TPM, token quotas) when its body names no max_tokens.',
          },
        },
      },
    },
  };
}
