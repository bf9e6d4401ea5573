// schema/keypool.schema.json is the builder's output, and the commented example passes both it and the parser.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { keypoolJsonSchema } from '../../src/declarative/json-schema.js';
import { parseConfigText } from '../../src/declarative/parse.js';

const ROOT = resolve(import.meta.dirname, '../..');

describe('keypool.yaml JSON Schema', () => {
  const schema = keypoolJsonSchema();

  it('schema/keypool.schema.json is up to date (regenerate: see README "Declarative configuration")', () => {
    expect(JSON.parse(readFileSync(join(ROOT, 'schema/keypool.schema.json'), 'utf8'))).toEqual(schema);
  });

  it('examples/keypool.yaml is valid for the schema and for the parser', () => {
    const text = readFileSync(join(ROOT, 'examples/keypool.yaml'), 'utf8');
    const validate = new Ajv({ allErrors: true }).compile(schema);
    expect(validate(parse(text)), JSON.stringify(validate.errors)).toBe(true);
    const parsed = parseConfigText(text);
    expect(parsed.ok ? [] : parsed.problems).toEqual([]);
  });

  it('rejects what the parser rejects for shape: an inline key, an unknown field, a priority out of range', () => {
    const validate = new Ajv().compile(schema);
    expect(validate({ accounts: [{ provider: 'openai', name: 'a', key: 'sk-inline' }] })).toBe(false);
    expect(validate({ keys: [{ name: 'k', tenant_id: 't' }] })).toBe(false);
    expect(validate({ mappings: [{ match: 'prefix', pattern: 'kp_', priority: 10 }] })).toBe(false);
    expect(validate({ prices: [{ provider: 'openai', model: 'gpt 4o', input: 1, output: 2 }] })).toBe(false);
    expect(validate({ prices: [{ provider: 'openai', model: '*', input: '1.2345678', output: 2 }] })).toBe(false);
    expect(validate({ prices: [{ provider: 'openai', model: '*', input: '0.075', output: 2, cached_input: null }] })).toBe(true);
  });
});
