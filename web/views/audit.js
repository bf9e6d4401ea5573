// The audit log, newest first, with filters and cursor pagination ("Load more" follows next_cursor).
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, query } from '../api.js';
import { html, ErrorLine, fmtDate } from '../lib.js';

// The server's list (src/admin/routes/audit.ts AUDIT_ACTIONS; test/admin/dashboard.test.ts keeps them equal).
const ACTIONS = [
  'created', 'updated', 'rotated', 'revoked', 'deleted', 'denied_ip', 'denied_expired', 'denied_revoked',
  'account_created', 'account_updated', 'account_disabled', 'account_enabled', 'account_invalidated', 'account_deleted',
  'mapping_created', 'mapping_updated', 'mapping_deleted', 'tenant_created', 'tenant_updated', 'tenant_deleted',
  'config_set', 'audit_pruned',
];
const PAGE = 50;

export function Audit() {
  const [filters, setFilters] = useState({ action: '', key_id: '', since: '' });
  const [rows, setRows] = useState([]);
  const [next, setNext] = useState(null);
  const [error, setError] = useState(null);
  const loadedMore = useRef(false);
  async function load(cursor) {
    loadedMore.current = cursor !== null;
    try {
      const since = filters.since ? new Date(filters.since).toISOString() : '';
      const page = await api('GET', `/admin/audit${query({ ...filters, since, limit: PAGE, cursor })}`);
      setRows((current) => (cursor ? [...current, ...page.items] : page.items));
      setNext(page.next_cursor);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  useEffect(() => {
    load(null);
    // The first page refreshes itself; pages loaded with "Load more" stay as they are until the filters change.
    const timer = setInterval(() => {
      if (!document.hidden && !loadedMore.current) load(null);
    }, 5000);
    return () => clearInterval(timer);
  }, [filters]);
  const set = (name) => (e) => setFilters({ ...filters, [name]: e.currentTarget.value });
  return html`<section>
    <h2>Audit log</h2>
    <div class="toolbar">
      <select aria-label="Action" value=${filters.action} onChange=${set('action')}>
        <option value="">every action</option>${ACTIONS.map((a) => html`<option>${a}</option>`)}
      </select>
      <input aria-label="Key id" placeholder="key id (UUID)" value=${filters.key_id} onChange=${set('key_id')} />
      <label>since <input type="datetime-local" value=${filters.since} onChange=${set('since')} /></label>
    </div>
    <${ErrorLine} error=${error} />
    <table>
      <thead><tr><th>when</th><th>action</th><th>actor</th><th>key</th><th>client</th><th>details</th></tr></thead>
      <tbody>
        ${rows.map((r) => html`<tr data-action=${r.action}>
          <td>${fmtDate(r.created_at)}</td><td>${r.action}${r.occurrences > 1 ? ` ×${r.occurrences}` : ''}</td><td>${r.actor}</td>
          <td class="mono">${r.key_id ? r.key_id.slice(0, 8) : '–'}</td><td>${r.client_ip ?? '–'}</td>
          <td class="mono small">${JSON.stringify(r.metadata)}</td>
        </tr>`)}
      </tbody>
    </table>
    ${next ? html`<button onClick=${() => load(next)}>Load more</button>` : html`<p class="muted">End of the log.</p>`}
  </section>`;
}
