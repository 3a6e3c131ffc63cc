import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, qs, type Session } from '../api.js';
import { useLive } from '../live.js';
import { Badge, ConfirmAction, Panel, Status, Time, duration, notify, useApi } from '../ui.js';

export interface Signal {
  id: string; nhi: string | null; jti: string | null; reason: string; severity: string; action: string; source: string;
  received_at: number; applied_at: number | null; status: string; error: string | null;
}
interface Stream { stream_id: string; owner: string; status: string; reason: string | null; aud: unknown; events_requested: string[] | undefined; delivery: { method?: string; endpoint_url?: string } }
interface SsfEvent { id: string; stream_id: string; jti: string; status: string; attempts: number; next_attempt_at: number | null; last_error: string | null; created_at: number }
interface Receiver { name: string; status: string; reason: string | null; [k: string]: unknown }

const ACTIONS = ['revoke_tokens', 'step_down', 'step_up', 'disable', 'block'];

/** Oldest undelivered SET per stream: how far behind delivery is. */
function lagByStream(events: SsfEvent[], now: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of events) {
    if (e.status !== 'queued' && e.status !== 'error') continue;
    out.set(e.stream_id, Math.max(out.get(e.stream_id) ?? 0, (now - e.created_at) / 1000));
  }
  return out;
}

function RaiseSignal(p: { onRaised: () => void }) {
  const [nhi, setNhi] = useState('');
  const [action, setAction] = useState('revoke_tokens');
  const [severity, setSeverity] = useState('high');
  const [reason, setReason] = useState('');
  const v = (fn: (s: string) => void) => (e: Event) => fn((e.target as HTMLInputElement).value);
  return html`<form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
    <label>NHI <input name="nhi" value=${nhi} onInput=${v(setNhi)} required /></label>
    <label>Action <select name="action" value=${action} onChange=${v(setAction)}>${ACTIONS.map((a) => html`<option value=${a}>${a}</option>`)}</select></label>
    <label>Severity <select name="severity" value=${severity} onChange=${v(setSeverity)}>${['low', 'medium', 'high', 'critical'].map((a) => html`<option value=${a}>${a}</option>`)}</select></label>
    <label>Reason <input name="signal-reason" value=${reason} onInput=${v(setReason)} /></label>
    <${ConfirmAction} label="Raise signal" danger withReason=${false} title=${`Raise ${action} for ${nhi || '…'}?`}
      consequence=${`A ${severity} signal is stored, audited, published to every instance and SSF receiver, and enforced at once: ${action} on ${nhi || '(no NHI named)'}.`}
      onConfirm=${async () => {
        if (!nhi) throw new Error('name the NHI');
        await api('POST', '/signals', { nhi, action, severity, reason: reason || 'raised from the console' });
        notify(`Signal raised: ${action} on ${nhi}`);
        p.onRaised();
      }} />
  </form>`;
}

export function SignalsPage(p: { session: Session }) {
  const live = useLive(['signal.', 'revocation.', 'kill.']);
  const signals = useApi<{ signals: Signal[] }>(`/signals${qs({ limit: 50 })}`, [live]);
  const streams = useApi<{ streams: Stream[] }>('/ssf/streams', [live]);
  const receivers = useApi<{ receivers: Receiver[] }>('/ssf/receivers');
  const events = useApi<{ events: SsfEvent[] }>(`/ssf/events${qs({ limit: 500 })}`, [live]);
  const dead = useApi<{ events: SsfEvent[] }>(`/ssf/events${qs({ status: 'dead' })}`, [live]);
  const lag = lagByStream(events.data?.events ?? [], Date.now());
  const admin = p.session.role === 'admin';
  return html`<h1>Signals and streams</h1>
    ${admin && html`<${Panel} title="Raise a signal"><${RaiseSignal} onRaised=${signals.reload} /><//>`}
    <${Panel} title="Streams out (SSF transmitter)">
      <${Status} loading=${streams.loading} error=${streams.error} />
      ${streams.data && (streams.data.streams.length === 0 ? html`<p class="muted">No stream has been created (an admin creates one at /ssf/streams; its receiver gets the stream's own credential).</p>` : html`<table>
        <thead><tr><th scope="col">Stream</th><th scope="col">Owner</th><th scope="col">Delivery</th><th scope="col">Status</th><th scope="col">Delivery lag</th></tr></thead>
        <tbody>${streams.data.streams.map((s) => html`<tr><td><code>${s.stream_id}</code></td><td>${s.owner}</td><td>${s.delivery.method?.split('/').pop()} ${s.delivery.endpoint_url ?? ''}</td>
          <td><${Badge} value=${s.status} /></td><td>${lag.has(s.stream_id) ? duration(lag.get(s.stream_id)!) : 'none queued'}</td></tr>`)}</tbody></table>`)}
    <//>
    <${Panel} title="Streams in (SSF receivers)">
      <${Status} loading=${receivers.loading} error=${receivers.error} />
      ${receivers.data && (receivers.data.receivers.length === 0 ? html`<p class="muted">No receiver is configured (signals.receivers).</p>` : html`<table>
        <thead><tr><th scope="col">Receiver</th><th scope="col">Issuer</th><th scope="col">Delivery</th><th scope="col">Status</th></tr></thead>
        <tbody>${receivers.data.receivers.map((r) => html`<tr><td>${r.name}</td><td>${String(r.issuer ?? '')}</td><td>${String(r.delivery ?? r.mode ?? '')}</td><td><${Badge} value=${r.status} /> ${r.reason ?? ''}</td></tr>`)}</tbody></table>`)}
    <//>
    <${Panel} title="Dead letters">
      <${Status} loading=${dead.loading} error=${dead.error} />
      ${dead.data && (dead.data.events.length === 0 ? html`<p class="muted">None.</p>` : html`<table>
        <thead><tr><th scope="col">Created</th><th scope="col">Stream</th><th scope="col">Attempts</th><th scope="col">Last error</th>${admin && html`<th scope="col">Retry</th>`}</tr></thead>
        <tbody>${dead.data.events.map((e) => html`<tr><td><${Time} ms=${e.created_at} /></td><td><code>${e.stream_id}</code></td><td>${e.attempts}</td><td>${e.last_error ?? ''}</td>
          ${admin && html`<td><${ConfirmAction} label="Retry" withReason=${false} title="Retry this SET?" consequence="The SET is queued for another round of push attempts."
            onConfirm=${async () => { await api('POST', `/ssf/events/${encodeURIComponent(e.id)}/retry`); dead.reload(); }} /></td>`}</tr>`)}</tbody></table>`)}
    <//>
    <${Panel} title="Signals">
      <${Status} loading=${signals.loading && !signals.data} error=${signals.error} />
      ${signals.data && html`<table><thead><tr><th scope="col">Received</th><th scope="col">NHI</th><th scope="col">Action</th><th scope="col">Severity</th><th scope="col">Reason</th><th scope="col">Source</th><th scope="col">Status</th><th scope="col">Time to apply</th></tr></thead>
        <tbody>${signals.data.signals.map((s) => html`<tr><td><${Time} ms=${s.received_at} /></td><td>${s.nhi ?? s.jti ?? ''}</td><td>${s.action}</td><td><${Badge} value=${s.severity} /></td>
          <td>${s.reason}</td><td>${s.source}</td><td><${Badge} value=${s.status} /></td><td>${s.applied_at !== null ? duration((s.applied_at - s.received_at) / 1000) : ''}</td></tr>`)}</tbody></table>`}
    <//>`;
}
