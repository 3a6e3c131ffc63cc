import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, qs, type Session } from '../api.js';
import { useLive } from '../live.js';
import { Badge, ConfirmAction, Facts, Panel, Status, Time, notify, useApi } from '../ui.js';

/** The shapes of governance's admin API (src/governance/admin-routes.ts). */
export type Severity = 'low' | 'medium' | 'high' | 'critical';
export interface Finding {
  id: string; nhi: string; detection: string; key: string; severity: Severity; title: string; evidence: Record<string, unknown>;
  first_seen: number; last_seen: number; count: number; status: 'open' | 'acknowledged' | 'resolved';
  status_by: string | null; status_at: number | null; status_note: string | null;
}
export interface RiskContribution { factor: string; points: number; detail: string }
export interface Risk { nhi: string; score: number; tier: string; status: string; owner: string; contributions: RiskContribution[] }
export interface PlaybookAction {
  id: string; playbook: string; trigger: string; finding_id: string | null; nhi: string; action: 'revoke_tokens' | 'step_down' | 'step_up' | 'disable';
  dry_run: boolean; signal_id: string | null; created_at: number; undone_at: number | null; undone_by: string | null;
}

export const SEVERITIES: Severity[] = ['critical', 'high', 'medium', 'low'];
const FACTOR_LABEL: Record<string, string> = {
  tier: 'Permission tier', credentials: 'Stored credentials', credential_age: 'Credentials past rotation', exceptions: 'Static-secret exceptions',
  unused_grants: 'Unused grants (standing privilege)', findings: 'Open findings', denials: 'Recent denials',
};
const factorLabel = (f: string) => FACTOR_LABEL[f] ?? f;
const level = (score: number) => (score >= 70 ? 'high' : score >= 40 ? 'medium' : 'low');

export function RiskScore(p: { risk: Risk }) {
  const c = p.risk.contributions;
  return html`<p class="score"><span class=${`big b-${level(p.risk.score)}`} data-risk-score>${Math.round(p.risk.score)}</span> / 100</p>
    ${c.length === 0
      ? html`<p class="muted">Nothing adds to the score.</p>`
      : html`<table data-contributions><caption>Contributions (each factor capped; the total at 100)</caption>
        <thead><tr><th scope="col">Factor</th><th scope="col">Points</th><th scope="col">Why</th></tr></thead>
        <tbody>${c.map((x) => html`<tr><td>${factorLabel(x.factor)}</td><td>${x.points}</td><td>${x.detail}</td></tr>`)}</tbody></table>`}`;
}

export function TopRisk() {
  const live = useLive(['detection.', 'signal.', 'revocation.', 'kill.']);
  const r = useApi<{ scores: Risk[] }>(`/risk${qs({ limit: 20 })}`, [live]);
  return html`<h1>Top 20 riskiest NHIs</h1>
    <${Status} loading=${r.loading && !r.data} error=${r.error} what="risk scores" />
    ${r.data && (r.data.scores.length === 0 ? html`<p class="muted">No NHI yet.</p>` : html`<table data-top-risk>
      <thead><tr><th scope="col">#</th><th scope="col">NHI</th><th scope="col">Score</th><th scope="col">Owner</th><th scope="col">Tier</th><th scope="col">Why</th></tr></thead>
      <tbody>${r.data.scores.map((x, i) => html`<tr><td>${i + 1}</td><th scope="row"><a href=${`#/nhis/${encodeURIComponent(x.nhi)}`}>${x.nhi}</a></th>
        <td><meter min="0" max="100" low="40" high="70" optimum="0" value=${x.score} aria-label=${`risk ${x.score}`}></meter> ${Math.round(x.score)}</td>
        <td>${x.owner}</td><td>${x.tier}${x.status !== 'active' ? html` <${Badge} value=${x.status} />` : ''}</td>
        <td>${x.contributions.length === 0 ? html`<span class="muted">nothing adds to the score</span>`
          : html`<ul class="why">${x.contributions.slice(0, 3).map((c) => html`<li>${factorLabel(c.factor)} +${c.points}: ${c.detail}</li>`)}</ul>`}</td></tr>`)}</tbody></table>`)}`;
}

export function FindingsTable(p: { findings: Finding[]; session: Session; onChange: () => void }) {
  const canChange = p.session.role !== 'viewer';
  const act = async (f: Finding, verb: 'ack' | 'resolve', note: string) => {
    await api('POST', `/findings/${encodeURIComponent(f.id)}/${verb}`, note ? { note } : {});
    notify(`Finding ${f.id} ${verb === 'ack' ? 'acknowledged' : 'resolved'}`);
    p.onChange();
  };
  if (p.findings.length === 0) return html`<p class="muted">No findings.</p>`;
  return html`<table><thead><tr><th scope="col">Severity</th><th scope="col">Finding</th><th scope="col">NHI</th><th scope="col">Status</th><th scope="col">Seen</th><th scope="col">Evidence</th>${canChange && html`<th scope="col">Action</th>`}</tr></thead>
    <tbody>${p.findings.map((f) => html`<tr data-finding=${f.id}>
      <td><${Badge} value=${f.severity} /></td><td>${f.title}<br /><span class="muted">${f.detection}</span></td>
      <td><a href=${`#/nhis/${encodeURIComponent(f.nhi)}`}>${f.nhi}</a></td>
      <td><${Badge} value=${f.status} />${f.status_by && html`<br /><span class="muted">by ${f.status_by}${f.status_note ? `: ${f.status_note}` : ''}</span>`}</td>
      <td><${Time} ms=${f.last_seen} />${f.count > 1 ? ` (×${f.count}, first ` : ''}${f.count > 1 && html`<${Time} ms=${f.first_seen} />)`}</td>
      <td><details><summary>evidence</summary><${Facts} data=${f.evidence} /></details></td>
      ${canChange && html`<td><div class="buttons">
        ${f.status === 'open' && html`<${ConfirmAction} label="Acknowledge" title="Acknowledge this finding?" consequence=${`“${f.title}” is marked acknowledged: seen and being handled. It still counts towards ${f.nhi}'s risk until resolved.`} onConfirm=${(r: string) => act(f, 'ack', r)} />`}
        ${f.status !== 'resolved' && html`<${ConfirmAction} label="Resolve" title="Resolve this finding?" consequence=${`“${f.title}” is closed and no longer counts towards ${f.nhi}'s risk. A new occurrence opens a new finding.`} onConfirm=${(r: string) => act(f, 'resolve', r)} />`}
      </div></td>`}</tr>`)}</tbody></table>`;
}

export function Findings(p: { session: Session }) {
  const [status, setStatus] = useState('open');
  const [severity, setSeverity] = useState('');
  const [nhi, setNhi] = useState('');
  const live = useLive(['detection.']);
  const r = useApi<{ findings: Finding[] }>(`/findings${qs({ status, min_severity: severity, nhi })}`, [live]);
  return html`<h1>Findings</h1>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>Status <select value=${status} onChange=${(e: Event) => setStatus((e.target as HTMLSelectElement).value)}>
        <option value="">any</option>${['open', 'acknowledged', 'resolved'].map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
      <label>Severity at least <select value=${severity} onChange=${(e: Event) => setSeverity((e.target as HTMLSelectElement).value)}>
        <option value="">any</option>${SEVERITIES.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
      <label>NHI <input type="search" value=${nhi} onChange=${(e: Event) => setNhi((e.target as HTMLInputElement).value.trim())} /></label>
    </form>
    <${Panel} title="Findings">
      <${Status} loading=${r.loading && !r.data} error=${r.error} what="findings" />
      ${r.data && html`<${FindingsTable} findings=${r.data.findings} session=${p.session} onChange=${r.reload} />`}
    <//>`;
}

const UNDO: Record<string, string> = {
  step_down: 'lifts the restriction the step-down put on',
  step_up: 'lifts the restriction the step-up put on',
  disable: 'lifts the kill switch the playbook engaged for',
};

/** What playbooks did to one NHI (or to every NHI), with undo of a step-down / step-up / disable (admin). */
export function PlaybookActions(p: { nhi?: string; session: Session; live: number; onChange?: () => void }) {
  const r = useApi<{ actions: PlaybookAction[] }>(`/playbook-actions${qs({ nhi: p.nhi, limit: 20 })}`, [p.live]);
  const admin = p.session.role === 'admin';
  return html`<${Panel} title="Playbook actions">
    <${Status} loading=${r.loading && !r.data} error=${r.error} what="playbook actions" />
    ${r.data && (r.data.actions.length === 0 ? html`<p class="muted">No automatic action.</p>` : html`<table>
      <thead><tr><th scope="col">When</th><th scope="col">Playbook</th><th scope="col">Action</th><th scope="col">NHI</th><th scope="col">Trigger</th><th scope="col">State</th></tr></thead>
      <tbody>${r.data.actions.map((a) => html`<tr data-playbook-action=${a.id}><td><${Time} ms=${a.created_at} /></td><td>${a.playbook}</td>
        <td>${a.action}${a.dry_run ? html` <${Badge} value="dry-run" />` : ''}</td><td>${a.nhi}</td>
        <td>${a.finding_id ?? a.trigger}</td>
        <td>${a.undone_at !== null
          ? html`undone by ${a.undone_by} <${Time} ms=${a.undone_at} />`
          : admin && !a.dry_run && UNDO[a.action]
            ? html`<${ConfirmAction} label="Undo" withReason=${false} title=${`Undo ${a.playbook}'s ${a.action}?`}
                consequence=${`This ${UNDO[a.action]} ${a.nhi}. Revoked tokens stay revoked.`}
                onConfirm=${async () => {
                  await api('POST', `/playbook-actions/${encodeURIComponent(a.id)}/undo`);
                  notify(`Playbook action ${a.id} undone`);
                  r.reload();
                  p.onChange?.();
                }} />`
            : html`<${Badge} value="applied" />`}</td></tr>`)}</tbody></table>`)}
  <//>`;
}
