// Per provider: accounts by state, recent decisions and denials, the strategy.
import { api } from '../api.js';
import { html, usePoll, ErrorLine, fmtNumber, StateBadge } from '../lib.js';

const STATES = ['healthy', 'degraded', 'unhealthy', 'invalid', 'cooling', 'disabled', 'unknown'];

export function Overview() {
  const { data, error } = usePoll(() => api('GET', '/admin/dashboard/overview?window_seconds=60'), []);
  return html`<section>
    <h2>Overview</h2>
    <${ErrorLine} error=${error} />
    ${data === null
      ? html`<p>Loading…</p>`
      : html`<div class="cards">
          ${data.providers.map((p) => html`<${ProviderCard} provider=${p} windowSeconds=${data.window_seconds} />`)}
        </div>`}
  </section>`;
}

function ProviderCard({ provider, windowSeconds }) {
  const denials = Object.entries(provider.activity.denials);
  return html`<article class="card" data-provider=${provider.slug}>
    <h3><a href=${`#/pool/${provider.slug}`}>${provider.display_name}</a> <small>${provider.slug}</small></h3>
    <p class="muted">strategy <b>${provider.strategy}</b> · ${provider.accounts.total} accounts</p>
    <div class="states">
      ${STATES.filter((s) => provider.accounts[s] > 0).map(
        (s) => html`<span class="state-count" data-state=${s}><${StateBadge} state=${s} /> ${provider.accounts[s]}</span>`,
      )}
    </div>
    <dl class="figures">
      <div><dt>decisions/s</dt><dd data-figure="dps">${fmtNumber(provider.activity.decisions_per_second)}</dd></div>
      <div><dt>allowed (${windowSeconds}s)</dt><dd data-figure="allowed">${fmtNumber(provider.activity.allows)}</dd></div>
      <div><dt>denied (${windowSeconds}s)</dt><dd>${fmtNumber(provider.activity.decisions - provider.activity.allows)}</dd></div>
    </dl>
    ${denials.length > 0
      ? html`<table class="compact"><thead><tr><th>denial code</th><th>count</th></tr></thead><tbody>
          ${denials.map(([code, n]) => html`<tr data-denial=${code}><td><code>${code}</code></td><td>${n}</td></tr>`)}
        </tbody></table>`
      : html`<p class="muted">No denials in the last ${windowSeconds}s.</p>`}
  </article>`;
}
