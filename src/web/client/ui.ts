import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from './html.js';
import { api, ApiError } from './api.js';

/** GETs an admin API path; refetches when `path` or a value in `deps` changes, or on `reload()`. */
export function useApi<T>(path: string | null, deps: unknown[] = []): { data?: T; error?: ApiError; loading: boolean; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: path !== null });
  const [n, setN] = useState(0);
  useEffect(() => {
    if (path === null) return;
    let gone = false;
    setState((s) => ({ ...s, loading: true }));
    api<T>('GET', path).then(
      (data) => !gone && setState({ data, loading: false }),
      (error: unknown) => !gone && setState({ error: error instanceof ApiError ? error : new ApiError(0, 'network', String(error)), loading: false }),
    );
    return () => {
      gone = true;
    };
  }, [path, n, ...deps]);
  return { ...state, reload: () => setN((x) => x + 1) };
}

const notices = new Set<(text: string) => void>();
/** Announces an outcome in the page's live region (read out by screen readers). */
export function notify(text: string): void {
  for (const fn of notices) fn(text);
}
export function Notices() {
  const [items, setItems] = useState<Array<{ id: number; text: string }>>([]);
  useEffect(() => {
    let id = 0;
    const fn = (text: string) => {
      const me = ++id;
      setItems((xs) => [...xs.slice(-3), { id: me, text }]);
      setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== me)), 8000);
    };
    notices.add(fn);
    return () => notices.delete(fn);
  }, []);
  return html`<div class="notices" role="status" aria-live="polite">${items.map((i) => html`<p key=${i.id}>${i.text}</p>`)}</div>`;
}

export function Panel(p: { title: string; children?: ComponentChildren; actions?: ComponentChildren; id?: string }) {
  const hid = p.id ?? `p-${p.title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return html`<section class="panel" aria-labelledby=${hid}>
    <header><h2 id=${hid}>${p.title}</h2>${p.actions}</header>
    ${p.children}
  </section>`;
}

/** Loading, error, or "not available on this server" (a route that is not there, such as governance's). */
export function Status(p: { loading?: boolean; error?: ApiError | undefined; what?: string }) {
  if (p.error?.unavailable) {
    return html`<p class="unavailable" data-unavailable>Not available on this server${p.what ? html`: ${p.what} needs the governance module` : ''}.</p>`;
  }
  if (p.error) return html`<p class="error" role="alert">${p.error.status ? `${p.error.status} ` : ''}${p.error.message}</p>`;
  if (p.loading) return html`<p class="muted">Loading…</p>`;
  return null;
}

export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round((now - ms) / 1000);
  const abs = Math.abs(s);
  const txt = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.round(abs / 60)}m` : abs < 86_400 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86_400)}d`;
  return s >= 0 ? `${txt} ago` : `in ${txt}`;
}

export function Time(p: { ms: number | null | undefined }) {
  if (p.ms === null || p.ms === undefined) return html`<span class="muted">—</span>`;
  const iso = new Date(p.ms).toISOString();
  return html`<time datetime=${iso} title=${iso}>${ago(p.ms)}</time>`;
}

export function duration(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${Math.round(seconds * 10) / 10} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}

export function Badge(p: { value: string | null | undefined }) {
  const v = p.value ?? '—';
  return html`<span class=${`badge b-${v.replace(/[^a-z_]/gi, '')}`}>${v}</span>`;
}

/**
 * A button that asks first, in a modal <dialog> that says exactly what will happen, with an
 * optional reason that goes to the audit log. Escape or Cancel closes it without acting.
 */
export function ConfirmAction(p: {
  label: string; title: string; consequence: string; confirmLabel?: string; danger?: boolean; withReason?: boolean;
  onConfirm: (reason: string) => Promise<unknown>;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const confirm = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      await p.onConfirm(reason.trim());
      ref.current?.close();
      setReason('');
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return html`<span>
    <button type="button" class=${p.danger ? 'danger' : ''} onClick=${() => ref.current?.showModal()}>${p.label}</button>
    <dialog ref=${ref} aria-labelledby=${`dlg-${p.label}`}>
      <form method="dialog" onSubmit=${confirm}>
        <h2 id=${`dlg-${p.label}`}>${p.title}</h2>
        <p>${p.consequence}</p>
        ${p.withReason !== false && html`<label>Reason (recorded in the audit log)
          <input name="reason" value=${reason} onInput=${(e: Event) => setReason((e.target as HTMLInputElement).value)} maxlength="500" />
        </label>`}
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <div class="buttons">
          <button type="button" onClick=${() => ref.current?.close()}>Cancel</button>
          <button type="submit" class=${p.danger ? 'danger' : 'primary'} disabled=${busy}>${p.confirmLabel ?? p.label}</button>
        </div>
      </form>
    </dialog>
  </span>`;
}

/** A key → value list for records the console does not know the shape of (governance's, evidence). */
export function Facts(p: { data: Record<string, unknown> }) {
  return html`<dl class="facts">${Object.entries(p.data).map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}</dd>`)}</dl>`;
}
