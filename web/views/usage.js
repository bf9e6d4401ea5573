// Usage over the last hour / day / week, per account or for a whole provider, aggregated by the server
// (GET /admin/usage/series) and drawn with uPlot.
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, query } from '../api.js';
import { html, usePoll, ErrorLine, fmtNumber } from '../lib.js';

const RANGES = ['1h', '1d', '1w'];
const CHARTS = [
  { id: 'requests', title: 'Requests', series: [['requests', '#3b82f6'], ['successes', '#16a34a'], ['rate_limited', '#f59e0b'], ['errors', '#dc2626']] },
  { id: 'tokens', title: 'Tokens', series: [['tokens', '#7c3aed']] },
  { id: 'latency', title: 'Average latency (ms)', series: [['latency_ms_avg', '#0891b2']] },
];

export function Usage() {
  const providers = usePoll(() => api('GET', '/admin/providers'), [], 0);
  const [provider, setProvider] = useState(null);
  const [accountId, setAccountId] = useState('');
  const [range, setRange] = useState('1h');
  const slug = provider ?? providers.data?.items[0]?.slug ?? null;
  const accounts = usePoll(() => (slug ? api('GET', `/admin/providers/${slug}/pool?limit=500`) : Promise.resolve(null)), [slug], 0);
  const series = usePoll(
    () => (slug ? api('GET', `/admin/usage/series${query(accountId ? { account_id: accountId, range } : { provider: slug, range })}`) : Promise.resolve(null)),
    [slug, accountId, range],
    15000,
  );
  const totals = series.data ? sums(series.data.series) : null;
  return html`<section>
    <h2>Usage</h2>
    <div class="toolbar">
      <label>provider <select name="provider" value=${slug ?? ''} onChange=${(e) => { setProvider(e.currentTarget.value); setAccountId(''); }}>
        ${(providers.data?.items ?? []).map((p) => html`<option value=${p.slug}>${p.display_name}</option>`)}
      </select></label>
      <label>account <select name="account" value=${accountId} onChange=${(e) => setAccountId(e.currentTarget.value)}>
        <option value="">all accounts</option>
        ${(accounts.data?.items ?? []).map((a) => html`<option value=${a.id}>${a.name}</option>`)}
      </select></label>
      <span class="segmented">
        ${RANGES.map((r) => html`<button class=${r === range ? 'active' : ''} onClick=${() => setRange(r)}>${r}</button>`)}
      </span>
      ${series.data ? html`<span class="muted">one point per ${series.data.step_seconds / 60} min</span>` : null}
    </div>
    <${ErrorLine} error=${series.error ?? providers.error} />
    ${totals ? html`<p class="totals" data-totals>
      requests <b data-total="requests">${fmtNumber(totals.requests)}</b> · successes <b>${fmtNumber(totals.successes)}</b> ·
      429s <b>${fmtNumber(totals.rate_limited)}</b> · errors <b>${fmtNumber(totals.errors)}</b> · tokens <b>${fmtNumber(totals.tokens)}</b></p>` : null}
    ${series.data ? CHARTS.map((c) => html`<${Chart} key=${c.id} chart=${c} data=${series.data.series} />`) : html`<p>Loading…</p>`}
  </section>`;
}

function sums(series) {
  const total = (name) => series[name].reduce((a, b) => a + b, 0);
  return { requests: total('requests'), successes: total('successes'), rate_limited: total('rate_limited'), errors: total('errors'), tokens: total('tokens') };
}

function Chart({ chart, data }) {
  const holder = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const width = Math.max(320, holder.current.clientWidth);
    plot.current = new uPlot(
      {
        width,
        height: 200,
        title: chart.title,
        series: [{}, ...chart.series.map(([name, stroke]) => ({ label: name, stroke, width: 1.5, fill: `${stroke}22` }))],
        axes: [{}, { size: 60 }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      },
      columns(chart, data),
      holder.current,
    );
    return () => plot.current.destroy();
  }, [chart.id]);
  useEffect(() => {
    plot.current.setData(columns(chart, data));
  }, [data]);
  return html`<div class="chart" data-chart=${chart.id} ref=${holder}></div>`;
}

function columns(chart, data) {
  return [data.t, ...chart.series.map(([name]) => data[name])];
}
