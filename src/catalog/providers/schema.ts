// Providers (the pools' upstream API families): the slug an operator names a pool by, validated.
import { checkProviderSlug, failure, type Validated } from '../validated.js';

/** A provider slug (`openai`, `azure-openai`); returned lower-case. Existence is the DAO's call. */
export function validateProviderSlug(value: unknown, field = 'providerSlug'): Validated<string> {
  const check = checkProviderSlug(value);
  return check.ok ? { ok: true, value: check.value } : failure(field, check.code, `${field}: ${check.message}`);
}
