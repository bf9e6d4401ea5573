// Priority mappings (key pattern -> priority and tenant): list, create, edit, delete, and a tester that asks this
// replica's compiled snapshot which rule and priority a presented key would get.
import { useState } from 'preact/hooks';
import { api, query } from '../api.js';
import { html, usePoll, ErrorLine, formValues } from '../lib.js';

// src/core/types.ts MATCH_TYPES (test/admin/dashboard.test.ts keeps them equal).
const MATCH_TYPES = ['exact', 'prefix', 'suffix', 'contains', 'regex'];
const BASE = '/admin/api-key-priority';

export function Mappings() {
  const mappings = usePoll(() => api('GET', `${BASE}/mappings`), [], 10000);
  const [editing, setEditing] = useState(null);
  const [notice, setNotice] = useState(null);
  if (mappings.error?.code === 'priority_disabled') {
    return html`<section><h2>Mappings</h2><p class="muted">${mappings.error.message}</p></section>`;
  }
  async function act(label, call) {
    try {
      await call();
      setNotice({ ok: true, text: `${label}: done` });
      setEditing(null);
    } catch (e) {
      setNotice({ ok: false, text: `${label}: ${e.message}` });
    }
    mappings.reload();
  }
  return html`<section>
    <h2>Mappings</h2>
    <${Tester} />
    ${notice ? html`<p class=${notice.ok ? 'ok' : 'error'} role="status">${notice.text}</p>` : null}
    <${ErrorLine} error=${mappings.error} />
    <table>
      <thead><tr><th>pattern</th><th>match</th><th>priority</th><th>tenant</th><th>window</th><th>enabled</th><th>description</th><th></th></tr></thead>
      <tbody>
        ${(mappings.data?.items ?? []).map((m) =>
          editing === m.id
            ? html`<tr><td colspan="8"><${MappingForm} mapping=${m} onSubmit=${(body) => act(`save ${m.pattern}`, () => api('PUT', `${BASE}/mappings/${m.id}`, body))} /></td></tr>`
            : html`<tr data-mapping=${m.pattern}>
                <td class="mono">${m.pattern}</td><td>${m.match_type}</td><td>${m.priority}</td>
                <td>${m.tenant_name ?? m.tenant_id ?? '–'}</td><td>${m.window ? windowLine(m.window) : 'always'}</td><td>${m.enabled ? 'yes' : 'no'}</td><td>${m.description ?? ''}</td>
                <td class="actions">
                  <button onClick=${() => setEditing(m.id)}>Edit</button>
                  <button class="danger" onClick=${() => act(`delete ${m.pattern}`, () => api('DELETE', `${BASE}/mappings/${m.id}`))}>Delete</button>
                </td>
              </tr>`,
        )}
      </tbody>
    </table>
    <h3>New mapping</h3>
    <${MappingForm} mapping=${null} onSubmit=${(body) => act('create mapping', () => api('POST', `${BASE}/mappings`, body))} />
  </section>`;
}

function MappingForm({ mapping, onSubmit }) {
  function submit(event) {
    event.preventDefault();
    const v = formValues(event.currentTarget);
    onSubmit({
      pattern: v.pattern,
      match_type: v.match_type,
      priority: Number(v.priority),
      tenant_id: v.tenant_id || null,
      tenant_name: v.tenant_name || null,
      description: v.description || null,
      enabled: v.enabled === 'on',
      // One line, as the CLI's --window; empty: the rule always applies.
      window: (v.window ?? '').trim() || null,
    });
  }
  return html`<form class="inline" onSubmit=${submit}>
    <label>pattern <input name="pattern" required value=${mapping?.pattern ?? ''} /></label>
    <label>match <select name="match_type" value=${mapping?.match_type ?? 'prefix'}>${MATCH_TYPES.map((t) => html`<option>${t}</option>`)}</select></label>
    <label>priority <input name="priority" type="number" min="0" max="9" required value=${mapping?.priority ?? 5} /></label>
    <label>tenant id <input name="tenant_id" value=${mapping?.tenant_id ?? ''} /></label>
    <label>tenant name <input name="tenant_name" value=${mapping?.tenant_name ?? ''} /></label>
    <label>description <input name="description" value=${mapping?.description ?? ''} /></label>
    <label>window <input name="window" placeholder="mon-fri 08:00-20:00 Europe/Berlin" value=${mapping?.window ? windowLine(mapping.window) : ''} /></label>
    <label><input type="checkbox" name="enabled" checked=${mapping?.enabled ?? true} /> enabled</label>
    <button type="submit">${mapping ? 'Save' : 'Create'}</button>
  </form>`;
}

/** {days, start, end, timezone} -> `mon,tue 08:00-20:00 Europe/Berlin` (the one-line form the API also accepts). */
function windowLine(w) {
  return `${w.days.join(',')} ${w.start}-${w.end} ${w.timezone}`;
}

function Tester() {
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  async function submit(event) {
    event.preventDefault();
    const presented = event.currentTarget.elements.key_prefix.value;
    try {
      setResult(await api('GET', `${BASE}/resolve${query({ key_prefix: presented })}`));
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  return html`<form class="inline panel" onSubmit=${submit} autocomplete="off">
    <label class="wide">Which rule and priority would this key get? <input name="key_prefix" type="password" required placeholder="key or prefix" /></label>
    <button type="submit">Resolve</button>
    ${result
      ? html`<p data-resolved>priority <b>${result.priority}</b> · tenant ${result.tenant_name ?? result.tenant_id ?? '–'} ·
          ${result.default_applied ? 'no mapping matched (default)' : html`rule <code>${result.pattern}</code> (${result.match_type})`}</p>`
      : null}
    <${ErrorLine} error=${error} />
  </form>`;
}
