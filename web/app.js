// The keypool dashboard: login, navigation between views (hash routes, so a reload keeps the view), live refresh.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { api, setCsrfToken, whenLoggedOut } from './api.js';
import { html, ErrorLine } from './lib.js';
import { Overview } from './views/overview.js';
import { Pool } from './views/pool.js';
import { Usage } from './views/usage.js';
import { Keys } from './views/keys.js';
import { Mappings } from './views/mappings.js';
import { Audit } from './views/audit.js';

const VIEWS = [
  { id: 'overview', title: 'Overview', component: Overview },
  { id: 'pool', title: 'Pool', component: Pool },
  { id: 'usage', title: 'Usage', component: Usage },
  { id: 'keys', title: 'Keys', component: Keys },
  { id: 'mappings', title: 'Mappings', component: Mappings },
  { id: 'audit', title: 'Audit log', component: Audit },
];

/** `#/pool/openai` -> { view: 'pool', arg: 'openai' } */
function readRoute() {
  const [view, arg] = location.hash.replace(/^#\/?/, '').split('/');
  return { view: VIEWS.some((v) => v.id === view) ? view : 'overview', arg: arg ? decodeURIComponent(arg) : null };
}

function Login({ onLoggedIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    setBusy(true);
    try {
      const session = await api('POST', '/ui/session', { token: form.elements.token.value });
      form.reset(); // the token leaves the page as soon as it was exchanged
      onLoggedIn(session);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="login">
    <form onSubmit=${submit} autocomplete="off">
      <h1>keypool</h1>
      <label>Admin token <input type="password" name="token" required autocomplete="off" autofocus /></label>
      <button type="submit" disabled=${busy}>Log in</button>
      <${ErrorLine} error=${error} />
      <p class="hint">The token (KEYPOOL_ADMIN_TOKEN) is exchanged for a session cookie and not kept by the page.</p>
    </form>
  </main>`;
}

function Shell({ session, onLogout }) {
  const [route, setRoute] = useState(readRoute());
  useEffect(() => {
    const follow = () => setRoute(readRoute());
    addEventListener('hashchange', follow);
    return () => removeEventListener('hashchange', follow);
  }, []);
  const current = VIEWS.find((v) => v.id === route.view);
  const View = current.component;
  return html`<div class="shell">
    <header>
      <span class="brand">keypool</span>
      <nav>
        ${VIEWS.map((v) => html`<a href=${`#/${v.id}`} class=${v.id === route.view ? 'active' : ''} data-view=${v.id}>${v.title}</a>`)}
      </nav>
      <span class="who">${session.actor}</span>
      ${session.auth_required ? html`<button class="link" onClick=${onLogout}>Log out</button>` : null}
    </header>
    <main data-view=${route.view}>
      <${View} arg=${route.arg} />
    </main>
  </div>`;
}

function App() {
  const [session, setSession] = useState(undefined);
  const [error, setError] = useState(null);
  useEffect(() => {
    whenLoggedOut(() => setSession(null));
    api('GET', '/ui/session')
      .then((s) => (s.authenticated ? adopt(s) : setSession(null)))
      .catch(setError);
  }, []);
  function adopt(s) {
    setCsrfToken(s.csrf_token);
    setSession(s);
  }
  async function logout() {
    await api('DELETE', '/ui/session').catch(() => undefined);
    setCsrfToken(null);
    setSession(null);
  }
  if (error) return html`<${ErrorLine} error=${error} />`;
  if (session === undefined) return html`<p class="boot">Loading keypool…</p>`;
  if (session === null) return html`<${Login} onLoggedIn=${adopt} />`;
  return html`<${Shell} session=${session} onLogout=${logout} />`;
}

render(html`<${App} />`, document.getElementById('app'));
