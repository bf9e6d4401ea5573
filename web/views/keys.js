// Client (system) keys: server-side search and keyset pagination (usable at 100,000 keys), create, rotate with a
// grace window, revoke, "due for rotation". A new key is shown exactly once, then only its display prefix.
import { useState } from 'preact/hooks';
import { api, query } from '../api.js';
import { html, usePoll, ErrorLine, fmtDate, ago, formValues, optionalInt } from '../lib.js';

const PAGE = 50;

export function Keys() {
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState('active');
  const [due, setDue] = useState(false);
  // Cursors of the pages before this one, so "Previous" works with keyset pagination.
  const [cursors, setCursors] = useState([null]);
  const cursor = cursors[cursors.length - 1];
  const [issued, setIssued] = useState(null);
  const [notice, setNotice] = useState(null);
  const [creating, setCreating] = useState(false);
  const keys = usePoll(
    () => api('GET', `/admin/keys${query({ q: search, status, due, limit: PAGE, cursor })}`),
    [search, status, due, cursor],
    10000,
  );
  const restart = (apply) => (e) => {
    apply(e);
    setCursors([null]);
  };
  async function act(label, call) {
    try {
      await call();
      setNotice({ ok: true, text: `${label}: done` });
    } catch (e) {
      setNotice({ ok: false, text: `${label}: ${e.message}` });
    }
    keys.reload();
  }
  return html`<section>
    <h2>Keys</h2>
    ${issued ? html`<${ShownOnce} issued=${issued} onDismiss=${() => setIssued(null)} />` : null}
    <div class="toolbar">
      <input type="search" placeholder="Search name or prefix" aria-label="Search keys" value=${search}
        onInput=${restart((e) => setSearch(e.currentTarget.value))} />
      <select aria-label="Status" value=${status} onChange=${restart((e) => setStatus(e.currentTarget.value))}>
        <option value="active">active</option><option value="revoked">revoked</option><option value="">all</option>
      </select>
      <label><input type="checkbox" checked=${due} onChange=${restart((e) => setDue(e.currentTarget.checked))} /> due for rotation</label>
      <button onClick=${() => setCreating(!creating)}>${creating ? 'Close' : 'Create key'}</button>
    </div>
    ${creating ? html`<${CreateKey} onIssued=${(r) => { setCreating(false); setIssued(r); keys.reload(); }} />` : null}
    ${notice ? html`<p class=${notice.ok ? 'ok' : 'error'} role="status">${notice.text}</p>` : null}
    <${ErrorLine} error=${keys.error} />
    <table>
      <thead><tr><th>name</th><th>prefix</th><th>tenant</th><th>status</th><th>rotation due</th><th>last used</th><th>expires</th><th></th></tr></thead>
      <tbody>
        ${(keys.data?.items ?? []).map((k) => html`<${KeyRow} key=${k.id} k=${k} act=${act} onIssued=${setIssued} />`)}
      </tbody>
    </table>
    <div class="pager">
      <button disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>Previous</button>
      <span>page ${cursors.length}</span>
      <button disabled=${!keys.data?.next_cursor} onClick=${() => setCursors([...cursors, keys.data.next_cursor])}>Next</button>
    </div>
  </section>`;
}

function KeyRow({ k, act, onIssued }) {
  const [confirming, setConfirming] = useState(false);
  const [grace, setGrace] = useState('24h');
  return html`<tr data-key=${k.name} data-status=${k.status}>
    <td>${k.name}</td>
    <td class="mono">${k.key_prefix}…</td>
    <td>${k.tenant_id ?? '–'}</td>
    <td>${k.status}</td>
    <td class=${k.rotation_overdue ? 'error' : ''}>${k.rotation_due_at ? fmtDate(k.rotation_due_at) : '–'}${k.rotation_overdue ? ' (overdue)' : ''}</td>
    <td>${ago(k.last_used_at)}</td>
    <td>${fmtDate(k.expires_at)}</td>
    <td class="actions">
      ${k.status === 'active'
        ? html`
          <input class="short" aria-label="grace" value=${grace} onInput=${(e) => setGrace(e.currentTarget.value)} title="grace window for the old key" />
          <button onClick=${() => act(`rotate ${k.name}`, async () => onIssued(await api('POST', `/admin/keys/${k.id}/rotate`, { grace })))}>Rotate</button>
          ${confirming
            ? html`<button class="danger" onClick=${() => act(`revoke ${k.name}`, () => api('POST', `/admin/keys/${k.id}/revoke`, {}))}>Confirm revoke</button>
                <button onClick=${() => setConfirming(false)}>Cancel</button>`
            : html`<button onClick=${() => setConfirming(true)}>Revoke</button>`}`
        : null}
    </td>
  </tr>`;
}

function CreateKey({ onIssued }) {
  const [error, setError] = useState(null);
  async function submit(event) {
    event.preventDefault();
    const v = formValues(event.currentTarget);
    try {
      const body = { name: v.name };
      if (v.tenant_id) body.tenant_id = v.tenant_id;
      if (v.rotate_after_days) body.rotate_after_days = optionalInt(v.rotate_after_days);
      if (v.expires_in) body.expires_in = v.expires_in;
      if (v.allowed_ips) body.allowed_ips = v.allowed_ips.split(',').map((s) => s.trim()).filter(Boolean);
      onIssued(await api('POST', '/admin/keys', body));
    } catch (e) {
      setError(e);
    }
  }
  return html`<form class="inline panel" onSubmit=${submit} data-form="create-key">
    <label>name <input name="name" required /></label>
    <label>tenant id <input name="tenant_id" /></label>
    <label>rotate after (days) <input name="rotate_after_days" type="number" min="1" /></label>
    <label>expires in <input name="expires_in" placeholder="e.g. 90d" /></label>
    <label class="wide">allowed IPs (CIDR, comma-separated) <input name="allowed_ips" /></label>
    <button type="submit">Create</button>
    <${ErrorLine} error=${error} />
  </form>`;
}

/** The only place a client key's plaintext ever appears; dismissing it drops it from the page for good. */
function ShownOnce({ issued, onDismiss }) {
  const [copied, setCopied] = useState(false);
  return html`<div class="panel once" role="alert" data-issued=${issued.key.name}>
    <p><b>${issued.key.name}</b>: ${issued.notice}</p>
    <p><code class="secret" data-secret>${issued.api_key}</code></p>
    <button onClick=${() => navigator.clipboard?.writeText(issued.api_key).then(() => setCopied(true), () => undefined)}>${copied ? 'Copied' : 'Copy'}</button>
    <button onClick=${onDismiss}>I stored it</button>
  </div>`;
}
