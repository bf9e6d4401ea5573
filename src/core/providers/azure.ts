// Azure OpenAI reports the OpenAI headers (often only the remaining counts) plus `retry-after-ms`, a
// retry hint that parseRetryAfterMs reads. Kept as its own name so the dialect table reads one file per dialect.
export { parseOpenAiLimits as parseAzureLimits } from './openai.js';
