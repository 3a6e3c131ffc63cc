import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, qs, type Session } from '../api.js';
import { useLive } from '../live.js';
import { Badge, ConfirmAction, Facts, Panel, Status, Time, notify, useApi } from '../ui.js';

/**
 * Governance (findings, risk, programme metrics) is built elsewhere; these pages call its
 * admin API paths and show "not available on this server" while they answer 404. The record
 * shapes are read loosely (snake_case, a few likely names) until that API is settled.
 */
export interface Finding {
  id: string; nhi?: string; nhi_id?: string; detection?: string; severity: string; title?: string; status: string;
  evidence?: Record<string, unknown>; first_seen?: number; last_seen?: number; count?: number;
}
export interface Risk {
  nhi?: string; score: number; contributions?: Array<Record<string, unknown>>; [k: string]: unknown;
}

export const SEVERITIES = ['critical', 'high', 'medium', 'low'];

const firstArray = (o: Record<string, unknown> | undefined): Array<Record<string, unknown>> =>
  (Object.values(o ?? {}).find((v) => Array.isArray(v)) as Array<Record<string, unknown>> | undefined) ?? [];

export function RiskScore(p: { risk: Risk }) {
  const c = p.risk.contributions ?? [];
  const level = p.risk.score >= 70 ? 'high' : p.risk.score >= 40 ? 'medium' : 'low';
  return html`<p class="score"><span class=${`big b-${level}`} data-risk-score>${Math.round(p.risk.score)}</span> / 100</p>
    ${c.length > 0 && html`<table><caption>Contributions</caption><thead><tr><th scope="col">Factor</th><th scope="col">Points</th></tr></thead>
      <tbody>${c.map((x) => html`<tr><td>${String(x.factor ?? x.name ?? x.detection ?? x.reason ?? '?')}</td><td>${String(x.points ?? x.score ?? x.weight ?? x.value ?? '')}</td></tr>`)}</tbody></table>`}`;
}

export function TopRisk() {
  const live = useLive(['detection.', 'signal.']);
  const r = useApi<Record<string, unknown>>(`/risk${qs({ limit: 20 })}`, [live]);
  const rows = firstArray(r.data)
    .map((x) => ({ nhi: String(x.nhi ?? x.nhi_id ?? x.id ?? '?'), score: Number(x.score ?? 0), top: firstArray({ c: x.contributions })[0] }))
    .sort((a, b) => b.score - a.score).slice(0, 20);
  return html`<h1>Top 20 riskiest NHIs</h1>
    <${Status} loading=${r.loading} error=${r.error} what="risk scores" />
    ${r.data && html`<table><thead><tr><th scope="col">#</th><th scope="col">NHI</th><th scope="col">Score</th><th scope="col">Largest contribution</th></tr></thead>
      <tbody>${rows.map((x, i) => html`<tr><td>${i + 1}</td><th scope="row"><a href=${`#/nhis/${encodeURIComponent(x.nhi)}`}>${x.nhi}</a></th>
        <td><meter min="0" max="100" low="40" high="70" optimum="0" value=${x.score} aria-label=${`risk ${x.score}`}></meter> ${Math.round(x.score)}</td>
        <td>${x.top ? String(x.top.factor ?? x.top.name ?? x.top.detection ?? '') : ''}</td></tr>`)}</tbody></table>`}`;
}

export function FindingsTable(p: { findings: Finding[]; session: Session; onChange: () => void }) {
  const canChange = p.session.role !== 'viewer';
  const act = async (f: Finding, verb: 'ack' | 'resolve', reason: string) => {
    await api('POST', `/findings/${encodeURIComponent(f.id)}/${verb}`, reason ? { reason } : {});
    notify(`Finding ${f.id} ${verb === 'ack' ? 'acknowledged' : 'resolved'}`);
    p.onChange();
  };
  if (p.findings.length === 0) return html`<p class="muted">No findings.</p>`;
  return html`<table><thead><tr><th scope="col">Severity</th><th scope="col">Finding</th><th scope="col">NHI</th><th scope="col">Status</th><th scope="col">Last seen</th><th scope="col">Evidence</th>${canChange && html`<th scope="col">Action</th>`}</tr></thead>
    <tbody>${p.findings.map((f) => html`<tr>
      <td><${Badge} value=${f.severity} /></td><td>${f.title ?? f.detection}</td>
      <td><a href=${`#/nhis/${encodeURIComponent(String(f.nhi ?? f.nhi_id ?? ''))}`}>${f.nhi ?? f.nhi_id}</a></td>
      <td><${Badge} value=${f.status} /></td><td><${Time} ms=${f.last_seen} />${f.count && f.count > 1 ? ` (×${f.count})` : ''}</td>
      <td>${f.evidence && html`<details><summary>evidence</summary><${Facts} data=${f.evidence} /></details>`}</td>
      ${canChange && html`<td class="buttons">
        ${f.status === 'open' && html`<${ConfirmAction} label="Acknowledge" title="Acknowledge this finding?" consequence=${`“${f.title ?? f.detection}” is marked acknowledged: seen and being handled. It stays listed until resolved.`} onConfirm=${(r: string) => act(f, 'ack', r)} />`}
        ${f.status !== 'resolved' && html`<${ConfirmAction} label="Resolve" title="Resolve this finding?" consequence=${`“${f.title ?? f.detection}” is closed. A new occurrence opens a new finding.`} onConfirm=${(r: string) => act(f, 'resolve', r)} />`}
      </td>`}</tr>`)}</tbody></table>`;
}

export function Findings(p: { session: Session }) {
  const [status, setStatus] = useState('open');
  const [severity, setSeverity] = useState('');
  const live = useLive(['detection.']);
  const r = useApi<{ findings: Finding[] }>(`/findings${qs({ status, severity })}`, [live]);
  return html`<h1>Findings</h1>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>Status <select value=${status} onChange=${(e: Event) => setStatus((e.target as HTMLSelectElement).value)}>
        <option value="">any</option>${['open', 'acknowledged', 'resolved'].map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
      <label>Severity <select value=${severity} onChange=${(e: Event) => setSeverity((e.target as HTMLSelectElement).value)}>
        <option value="">any</option>${SEVERITIES.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
    </form>
    <${Panel} title="Findings">
      <${Status} loading=${r.loading && !r.data} error=${r.error} what="findings" />
      ${r.data && html`<${FindingsTable} findings=${r.data.findings} session=${p.session} onChange=${r.reload} />`}
    <//>`;
}
