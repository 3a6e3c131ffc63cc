import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { ApiError, onSignedOut, request, setCsrf, type Session } from './api.js';
import { onLive, startLive, stopLive } from './live.js';
import { Notices, notify } from './ui.js';
import { Overview } from './pages/overview.js';
import { NhiList, NhiPage } from './pages/nhis.js';
import { TopRisk, Findings } from './pages/governance.js';
import { Approvals } from './pages/approvals.js';
import { Audit } from './pages/audit.js';
import { SignalsPage } from './pages/signals.js';
import { Profiles } from './pages/profiles.js';
import { Credentials } from './pages/credentials.js';

const NAV: Array<[string, string]> = [
  ['#/', 'Overview'], ['#/nhis', 'NHIs'], ['#/risk', 'Top 20 riskiest'], ['#/findings', 'Findings'], ['#/approvals', 'Approvals'],
  ['#/audit', 'Audit'], ['#/signals', 'Signals and streams'], ['#/profiles', 'Token profiles'],
];
/** Pages only an admin credential can use (the API refuses the others). */
const ADMIN_NAV: Array<[string, string]> = [['#/credentials', 'Admin credentials']];

function useHash(): string {
  const [hash, setHash] = useState(location.hash || '#/');
  useEffect(() => {
    const fn = () => setHash(location.hash || '#/');
    addEventListener('hashchange', fn);
    return () => removeEventListener('hashchange', fn);
  }, []);
  return hash;
}

function SignIn(p: { onSignedIn: (s: Session) => void; message: string }) {
  const [credential, setCredential] = useState('');
  const [error, setError] = useState('');
  const submit = async (e: Event) => {
    e.preventDefault();
    setError('');
    try {
      p.onSignedIn(await request<Session>('POST', '/ui/session', { credential: credential.trim() }));
      setCredential('');
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'That admin credential was not accepted.' : String(err instanceof Error ? err.message : err));
    }
  };
  return html`<main class="signin">
    <h1>Mandate</h1>
    <form onSubmit=${submit}>
      <h2>Sign in to the console</h2>
      ${p.message && html`<p class="muted">${p.message}</p>`}
      <label>Admin credential
        <input type="password" name="credential" autocomplete="off" placeholder="mdt.…" required value=${credential}
          onInput=${(e: Event) => setCredential((e.target as HTMLInputElement).value)} />
      </label>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" class="primary">Sign in</button>
    </form>
  </main>`;
}

function Page(p: { hash: string; session: Session }) {
  const parts = p.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  switch (parts[0]) {
    case '': return html`<${Overview} />`;
    case 'nhis': return parts[1] ? html`<${NhiPage} id=${parts[1]} session=${p.session} />` : html`<${NhiList} />`;
    case 'risk': return html`<${TopRisk} />`;
    case 'findings': return html`<${Findings} session=${p.session} />`;
    case 'approvals': return html`<${Approvals} session=${p.session} />`;
    case 'audit': return html`<${Audit} initial=${Object.fromEntries(new URLSearchParams(parts[1] ?? ''))} />`;
    case 'signals': return html`<${SignalsPage} session=${p.session} />`;
    case 'profiles': return html`<${Profiles} />`;
    case 'credentials': return html`<${Credentials} session=${p.session} />`;
    default: return html`<p>No such page. <a href="#/">Overview</a></p>`;
  }
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [message, setMessage] = useState('');
  const hash = useHash();
  const signedIn = (s: Session) => {
    setCsrf(s.csrf_token);
    setSession(s);
  };
  const ended = (why: string) => {
    stopLive();
    setCsrf('');
    setSession(null);
    setMessage(why);
  };
  useEffect(() => {
    request<Session>('GET', '/ui/session').then(signedIn, () => setSession(null));
    return onSignedOut(() => ended('Your session ended (idle timeout or signed out). Sign in again.'));
  }, []);
  useEffect(() => {
    if (!session) return;
    startLive(() => ended('Your session ended. Sign in again.'));
    return onLive((e) => notify(`Live: ${e.subject}${e.id ? ` ${String(e.id)}` : ''}${e.nhi ? ` (${String(e.nhi)})` : ''}`));
  }, [session]);

  if (session === undefined) return html`<p class="muted">Loading…</p>`;
  if (session === null) return html`<${SignIn} onSignedIn=${signedIn} message=${message} />`;
  const signOut = async () => {
    await request('DELETE', '/ui/session').catch(() => {});
    ended('Signed out.');
  };
  const nav = session.role === 'admin' ? [...NAV, ...ADMIN_NAV] : NAV;
  const current = nav.find(([h]) => h !== '#/' && hash.startsWith(h))?.[0] ?? (hash === '#/' ? '#/' : '');
  return html`<div class="layout">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <span class="brand">Mandate</span>
      <span class="who">${session.name} · <strong data-role>${session.role}</strong></span>
      <button type="button" onClick=${signOut}>Sign out</button>
    </header>
    <nav aria-label="Console">
      <ul>${nav.map(([h, label]) => html`<li><a href=${h} aria-current=${current === h ? 'page' : undefined}>${label}</a></li>`)}</ul>
    </nav>
    <main id="main" tabindex="-1"><${Page} hash=${hash} session=${session} /></main>
    <${Notices} />
  </div>`;
}

render(html`<${App} />`, document.getElementById('app')!);
