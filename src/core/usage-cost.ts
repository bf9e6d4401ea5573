// What a response's tokens cost, from the operator's price table (token_prices, migration 0010). Pure.
//
// Prices are USD per million tokens. A price names a provider and a model: the exact model the provider reported
// (`gpt-4o-2024-08-06`), a prefix ending in `*` (`gpt-4o-mini*`: the longest matching prefix wins, so `gpt-4o-mini*`
// beats `gpt-4o*`), or `*` alone for every model of the provider. The cached and cache-creation prices default to the
// input price when unset.
import type { TokenUsage } from './usage.js';

export interface TokenPrice {
  readonly inputUsdPerMTok: number;
  readonly outputUsdPerMTok: number;
  readonly cachedInputUsdPerMTok: number | null;
  readonly cacheCreationUsdPerMTok: number | null;
}

/** Prices of one provider by model pattern (`gpt-4o`, `gpt-4o*`, `*`). */
export type ProviderPrices = ReadonlyMap<string, TokenPrice>;

/** Longest model name or pattern a price may carry. */
export const MAX_MODEL_CHARS = 200;

/** The price for `model` of one provider: exact name, else the longest `prefix*`, else `*`; null without any. */
export function priceFor(prices: ProviderPrices | undefined, model: string | null): TokenPrice | null {
  if (prices === undefined || prices.size === 0) return null;
  if (model !== null) {
    const exact = prices.get(model);
    if (exact !== undefined) return exact;
    let best: TokenPrice | null = null;
    let bestLength = -1;
    for (const [pattern, price] of prices) {
      if (!pattern.endsWith('*') || pattern.length === 1) continue;
      const prefix = pattern.slice(0, -1);
      if (prefix.length > bestLength && model.startsWith(prefix)) {
        best = price;
        bestLength = prefix.length;
      }
    }
    if (best !== null) return best;
  }
  return prices.get('*') ?? null;
}

/** USD for one response's usage at `price`; 0 without a price. Cached and cache-written input at their own prices. */
export function costUsd(usage: TokenUsage, price: TokenPrice | null): number {
  if (price === null) return 0;
  const cached = Math.min(usage.cachedInputTokens, usage.inputTokens);
  const written = Math.min(usage.cacheCreationInputTokens, usage.inputTokens - cached);
  const plain = usage.inputTokens - cached - written;
  const micro =
    plain * price.inputUsdPerMTok +
    cached * (price.cachedInputUsdPerMTok ?? price.inputUsdPerMTok) +
    written * (price.cacheCreationUsdPerMTok ?? price.inputUsdPerMTok) +
    usage.outputTokens * price.outputUsdPerMTok;
  return micro / 1_000_000;
}
