// One provider's accounts with their live state, a page at a time (pools of thousands stay fast: the server pages
// and reads live state only for the page). Actions: enable/disable, test connection, edit, add.
import { useState } from 'preact/hooks';
import { api, query } from '../api.js';
import { html, usePoll, ErrorLine, fmtNumber, ago, until, StateBadge, formValues, optionalInt } from '../lib.js';

const PAGE = 50;

export function Pool({ arg }) {
  const providers = usePoll(() => api('GET', '/admin/providers'), [], 0);
  const slug = arg ?? providers.data?.items[0]?.slug ?? null;
  return html`<section>
    <h2>Pool</h2>
    <${ErrorLine} error=${providers.error} />
    <div class="tabs">
      ${(providers.data?.items ?? []).map(
        (p) => html`<a href=${`#/pool/${p.slug}`} class=${p.slug === slug ? 'active' : ''}>${p.display_name} (${p.accounts.total})</a>`,
      )}
    </div>
    ${slug ? html`<${ProviderPool} key=${slug} slug=${slug} />` : null}
  </section>`;
}

function ProviderPool({ slug }) {
  const [search, setSearch] = useState('');
  const [offset, setOffset] = useState(0);
  const [editing, setEditing] = useState(null);
  const [adding, setAdding] = useState(false);
  const [notice, setNotice] = useState(null);
  const pool = usePoll(
    () => api('GET', `/admin/providers/${slug}/pool${query({ q: search, offset, limit: PAGE })}`),
    [slug, search, offset],
  );
  async function act(label, call) {
    try {
      const result = await call();
      setNotice({ ok: true, text: typeof result === 'string' ? result : `${label}: done` });
    } catch (e) {
      setNotice({ ok: false, text: `${label}: ${e.message}` });
    }
    pool.reload();
  }
  const base = `/admin/providers/${slug}/accounts`;
  const rows = pool.data?.items ?? [];
  const total = pool.data?.total ?? 0;
  return html`<div>
    <div class="toolbar">
      <input type="search" placeholder="Filter by name" value=${search} aria-label="Filter accounts"
        onInput=${(e) => { setSearch(e.currentTarget.value); setOffset(0); }} />
      <span class="muted">${total} accounts · refreshes every 2s</span>
      <button onClick=${() => setAdding(!adding)}>${adding ? 'Close' : 'Add account'}</button>
    </div>
    ${notice ? html`<p class=${notice.ok ? 'ok' : 'error'} role="status" data-notice>${notice.text}</p>` : null}
    ${adding ? html`<${AddAccount} slug=${slug} onDone=${(text) => { setAdding(false); setNotice({ ok: true, text }); pool.reload(); }} />` : null}
    <${ErrorLine} error=${pool.error} />
    <table class="pool">
      <thead><tr>
        <th>account</th><th>state</th><th>health / circuit</th><th>cooldown</th><th>remaining req</th><th>remaining tokens</th>
        <th>in flight</th><th>rpm used</th><th>last 429</th><th>last 401</th><th>weight · tier</th><th></th>
      </tr></thead>
      <tbody>
        ${rows.map((a) => html`<${AccountRow} account=${a} editing=${editing === a.id}
          onEdit=${() => setEditing(editing === a.id ? null : a.id)}
          onSaved=${() => { setEditing(null); setNotice({ ok: true, text: `${a.name}: saved` }); pool.reload(); }}
          base=${base} act=${act} />`)}
      </tbody>
    </table>
    <div class="pager">
      <button disabled=${offset === 0} onClick=${() => setOffset(Math.max(0, offset - PAGE))}>Previous</button>
      <span>${total === 0 ? 0 : offset + 1}–${Math.min(offset + PAGE, total)} of ${total}</span>
      <button disabled=${offset + PAGE >= total} onClick=${() => setOffset(offset + PAGE)}>Next</button>
    </div>
  </div>`;
}

function AccountRow({ account: a, editing, onEdit, onSaved, base, act }) {
  const live = a.live ?? {};
  const url = `${base}/${a.id}`;
  const health = a.live ? `${live.health}${live.circuit_open_until ? ` · open ${until(live.circuit_open_until)}` : ''}` : '–';
  return html`<tr data-account=${a.name} data-state=${a.state}>
      <td><b>${a.name}</b><br /><span class="muted mono">••••${a.key_last4}</span></td>
      <td><${StateBadge} state=${a.state} /></td>
      <td>${health}</td>
      <td data-col="cooldown">${live.cooldown_seconds_left > 0 ? `${live.cooldown_seconds_left}s` : '–'}</td>
      <td>${fmtNumber(live.remaining_requests)}${live.limit_requests != null ? ` / ${fmtNumber(live.limit_requests)}` : ''}
        ${live.requests_reset_at ? html`<br /><span class="muted">reset ${until(live.requests_reset_at)}</span>` : null}</td>
      <td>${fmtNumber(live.remaining_tokens)}${live.limit_tokens != null ? ` / ${fmtNumber(live.limit_tokens)}` : ''}
        ${live.tokens_reset_at ? html`<br /><span class="muted">reset ${until(live.tokens_reset_at)}</span>` : null}</td>
      <td>${fmtNumber(live.in_flight ?? 0)} / ${a.max_concurrency ?? '∞'}</td>
      <td>${fmtNumber(live.requests_in_window ?? 0)} / ${a.rpm_limit ?? '∞'}</td>
      <td data-col="last429">${ago(a.last_429_at)}</td>
      <td>${ago(a.last_401_at)}</td>
      <td data-col="weight">${a.weight} · ${a.tier}</td>
      <td class="actions">
        ${a.status === 'active'
          ? html`<button onClick=${() => act(`disable ${a.name}`, () => api('POST', `${url}/disable`, {}))}>Disable</button>`
          : html`<button onClick=${() => act(`enable ${a.name}`, () => api('POST', `${url}/enable`, {}))}>Enable</button>`}
        <button onClick=${() => act(`test ${a.name}`, async () => {
          const r = await api('POST', `${url}/check-health`, {});
          return `${a.name}: ${r.ok ? 'OK' : r.outcome}${r.upstream_status ? ` (HTTP ${r.upstream_status})` : ''}${r.message ? ` – ${r.message}` : ''}, ${r.latency_ms} ms`;
        })}>Test</button>
        <button onClick=${onEdit}>${editing ? 'Cancel' : 'Edit'}</button>
      </td>
    </tr>
    ${editing ? html`<tr class="edit-row"><td colspan="12"><${EditAccount} account=${a} url=${url} onSaved=${onSaved} /></td></tr>` : null}`;
}

function EditAccount({ account, url, onSaved }) {
  const [error, setError] = useState(null);
  async function submit(event) {
    event.preventDefault();
    const v = formValues(event.currentTarget);
    try {
      const patch = {
        weight: Number(v.weight),
        tier: Number(v.tier),
        rpm_limit: optionalInt(v.rpm_limit),
        tpm_limit: optionalInt(v.tpm_limit),
        max_concurrency: optionalInt(v.max_concurrency),
        tags: JSON.parse(v.tags || '{}'),
      };
      await api('PATCH', url, patch);
      onSaved();
    } catch (e) {
      setError(e);
    }
  }
  return html`<form class="inline" onSubmit=${submit} data-edit=${account.name}>
    <label>weight <input name="weight" type="number" min="0" value=${account.weight} /></label>
    <label>tier <input name="tier" type="number" min="0" value=${account.tier} /></label>
    <label>rpm limit <input name="rpm_limit" type="number" min="1" value=${account.rpm_limit ?? ''} /></label>
    <label>tpm limit <input name="tpm_limit" type="number" min="1" value=${account.tpm_limit ?? ''} /></label>
    <label>max concurrency <input name="max_concurrency" type="number" min="1" value=${account.max_concurrency ?? ''} /></label>
    <label class="wide">tags (JSON: models, scope, base_url…) <input name="tags" value=${JSON.stringify(account.tags ?? {})} /></label>
    <button type="submit">Save</button>
    <${ErrorLine} error=${error} />
  </form>`;
}

function AddAccount({ slug, onDone }) {
  const [error, setError] = useState(null);
  async function submit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const v = formValues(form);
    try {
      const created = await api('POST', `/admin/providers/${slug}/accounts`, {
        name: v.name,
        api_key: v.api_key,
        weight: v.weight === '' ? undefined : Number(v.weight),
        tier: v.tier === '' ? undefined : Number(v.tier),
        rpm_limit: optionalInt(v.rpm_limit),
        tpm_limit: optionalInt(v.tpm_limit),
        max_concurrency: optionalInt(v.max_concurrency),
      });
      form.reset(); // the upstream key is write-only: gone from the page once sent
      onDone(`${created.account.name} added (key ••••${created.account.key_last4})`);
    } catch (e) {
      setError(e);
    }
  }
  return html`<form class="inline panel" onSubmit=${submit} autocomplete="off" data-form="add-account">
    <label>name <input name="name" required /></label>
    <label>upstream API key <input name="api_key" type="password" required autocomplete="new-password" /></label>
    <label>weight <input name="weight" type="number" min="0" placeholder="1" /></label>
    <label>tier <input name="tier" type="number" min="0" placeholder="0" /></label>
    <label>rpm limit <input name="rpm_limit" type="number" min="1" /></label>
    <label>tpm limit <input name="tpm_limit" type="number" min="1" /></label>
    <label>max concurrency <input name="max_concurrency" type="number" min="1" /></label>
    <button type="submit">Add</button>
    <${ErrorLine} error=${error} />
  </form>`;
}
