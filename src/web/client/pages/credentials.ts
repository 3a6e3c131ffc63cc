import { useRef, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, type Session } from '../api.js';
import { useLive } from '../live.js';
import { Badge, Panel, Status, Time, notify, useApi } from '../ui.js';

export interface AdminCredential {
  id: string; name: string; role: string; status: string; created_at: number; expires_at: number | null; revoked_at: number | null; last_used_at: number | null;
}

/** A `datetime-local` value (the browser's time zone) as the RFC 3339 instant the API takes. */
function instant(local: string): string {
  const ms = new Date(local).getTime();
  if (!Number.isFinite(ms)) throw new Error('give a date and time');
  return new Date(ms).toISOString();
}

/** Create: name, role, an optional end; the answer's token is shown once, here. */
function CreateCredential(p: { onCreated: (c: AdminCredential & { token: string }) => void }) {
  const [name, setName] = useState('');
  const [role, setRole] = useState('viewer');
  const [expires, setExpires] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const v = (fn: (s: string) => void) => (e: Event) => fn((e.target as HTMLInputElement).value);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError('');
    setBusy(true);
    try {
      const c = await api<AdminCredential & { token: string }>('POST', '/admin-credentials', { name: name.trim(), role, ...(expires ? { expires: instant(expires) } : {}) });
      setName('');
      setExpires('');
      p.onCreated(c);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Create an admin credential">
    <label>Name <input name="credential-name" value=${name} onInput=${v(setName)} required maxlength="100" /></label>
    <label>Role <select name="credential-role" value=${role} onChange=${v(setRole)}>${['viewer', 'approver', 'admin'].map((r) => html`<option value=${r}>${r}</option>`)}</select></label>
    <label>Expires (optional) <input type="datetime-local" name="credential-expires" value=${expires} onInput=${v(setExpires)} /></label>
    <button type="submit" class="primary" disabled=${busy}>Create credential</button>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </form>`;
}

/**
 * Revoke, or give an end: a modal that says what happens, with the force box for the last
 * active admin credential (the server refuses without it and says why).
 */
function EndCredential(p: { c: AdminCredential; mode: 'revoke' | 'expire'; onDone: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState('');
  const [when, setWhen] = useState('');
  const [force, setForce] = useState(false);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const revoke = p.mode === 'revoke';
  const label = revoke ? 'Revoke' : 'Set expiry';
  const dialogId = `dlg-${p.mode}-${p.c.id}`;
  const confirm = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const path = `/admin-credentials/${encodeURIComponent(p.c.id)}/${revoke ? 'revoke' : 'expire'}`;
      await api('POST', path, revoke ? { ...(reason.trim() ? { reason: reason.trim() } : {}), force } : { expires: instant(when), force });
      notify(revoke ? `Credential ${p.c.name} revoked` : `Credential ${p.c.name} now ends ${new Date(instant(when)).toISOString()}`);
      ref.current?.close();
      p.onDone();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return html`<span>
    <button type="button" class=${revoke ? 'danger' : ''} onClick=${() => ref.current?.showModal()}>${label}</button>
    <dialog ref=${ref} aria-labelledby=${dialogId}>
      <form method="dialog" onSubmit=${confirm}>
        <h2 id=${dialogId}>${revoke ? `Revoke ${p.c.name}?` : `Set when ${p.c.name} ends`}</h2>
        <p>${revoke
          ? `The ${p.c.role} credential ${p.c.id} is refused from now on, on every instance, and its console sessions end. This cannot be undone.`
          : `From that moment the ${p.c.role} credential ${p.c.id} is refused on every instance and its console sessions end. An ended credential is never brought back.`}</p>
        ${revoke
          ? html`<label>Reason (recorded in the audit log)
              <input name="reason" value=${reason} onInput=${(e: Event) => setReason((e.target as HTMLInputElement).value)} maxlength="500" /></label>`
          : html`<label>Ends at <input type="datetime-local" name="expires" required value=${when} onInput=${(e: Event) => setWhen((e.target as HTMLInputElement).value)} /></label>`}
        ${p.c.role === 'admin' && html`<label class="check"><input type="checkbox" name="force" checked=${force} onChange=${(e: Event) => setForce((e.target as HTMLInputElement).checked)} />
          Even if it is the last active admin credential (nobody can then manage Mandate until a restart prints a new bootstrap credential)</label>`}
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <div class="buttons">
          <button type="button" onClick=${() => ref.current?.close()}>Cancel</button>
          <button type="submit" class=${revoke ? 'danger' : 'primary'} disabled=${busy}>${label}</button>
        </div>
      </form>
    </dialog>
  </span>`;
}

/** Admin, approver and viewer credentials: who they are, whether they still work, and the controls to end them. */
export function Credentials(p: { session: Session }) {
  const live = useLive(['admin.credential.']);
  const r = useApi<{ credentials: AdminCredential[] }>('/admin-credentials', [live]);
  const [created, setCreated] = useState<(AdminCredential & { token: string }) | null>(null);
  return html`<h1>Admin credentials</h1>
    <p class="muted">Console and admin API credentials. A secret is shown once, when it is created; only its hash is kept.</p>
    <${Panel} title="Create">
      <${CreateCredential} onCreated=${(c: AdminCredential & { token: string }) => {
        setCreated(c);
        notify(`Credential ${c.name} created`);
        r.reload();
      }} />
      ${created && html`<div class="warn" data-new-credential>
        <p><strong>Copy it now: it is shown only this once.</strong> ${created.role} credential ${created.name} (${created.id}):</p>
        <p><code data-token>${created.token}</code></p>
        <button type="button" onClick=${() => setCreated(null)}>I have copied it</button>
      </div>`}
    <//>
    <${Panel} title="Credentials">
      <${Status} loading=${r.loading && !r.data} error=${r.error} />
      ${r.data && html`<table>
        <thead><tr><th scope="col">Name</th><th scope="col">Id</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col">Actions</th></tr></thead>
        <tbody>${r.data.credentials.map((c) => html`<tr data-credential=${c.id}>
          <th scope="row">${c.name}${c.id === p.session.id ? html` <span class="muted">(you)</span>` : ''}</th><td><code>${c.id}</code></td><td>${c.role}</td>
          <td><${Badge} value=${c.status} /></td><td><${Time} ms=${c.created_at} /></td><td><${Time} ms=${c.expires_at} /></td><td><${Time} ms=${c.last_used_at} /></td>
          <td>${c.status === 'active' && html`<div class="buttons"><${EndCredential} c=${c} mode="expire" onDone=${r.reload} /><${EndCredential} c=${c} mode="revoke" onDone=${r.reload} /></div>`}</td>
        </tr>`)}</tbody></table>`}
    <//>`;
}
