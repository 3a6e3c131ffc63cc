import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, qs, type Session } from '../api.js';
import { useLive } from '../live.js';
import { Badge, ConfirmAction, Panel, Status, Time, ago, notify, useApi } from '../ui.js';
import { FindingsTable, PlaybookActions, RiskScore, type Finding, type Risk } from './governance.js';

export interface Nhi {
  id: string; class: string; owner: string; system: string; environment: string; tier: string; status: string;
  description: string | null; source: string; created_at: number; updated_at: number;
}
interface Credential { id: string; type: string; trust: string | null; subject: string | null; created_at: number; expires_at: number | null; last_rotated_at: number | null; exception_ticket: string | null; exception_expires_at: number | null }
interface Grant { id: string; tool: string; actions: string[]; change_ref: string | null; expires_at: number | null; last_used_at: number | null; created_at: number }
interface Token { jti: string; tool: string; scope: string; tier: string; issued_at: number; expires_at: number; bound: string; act: string | null }
interface AuditRecord { id: string; ts: number; type: string; actor: string | null; subject: string | null; tool: string | null; decision: string | null; traceId: string | null; data: Record<string, unknown> }

const field = (label: string, value: string, onChange: (v: string) => void, options?: string[]) => html`<label>${label}
  ${options
    ? html`<select value=${value} onChange=${(e: Event) => onChange((e.target as HTMLSelectElement).value)}>
        <option value="">any</option>${options.map((o) => html`<option value=${o}>${o}</option>`)}</select>`
    : html`<input type="search" value=${value} onInput=${(e: Event) => onChange((e.target as HTMLInputElement).value)} />`}
</label>`;

export function NhiList() {
  const [search, setSearch] = useState('');
  const [cls, setCls] = useState('');
  const [status, setStatus] = useState('');
  const [env, setEnv] = useState('');
  const [owner, setOwner] = useState('');
  const [tier, setTier] = useState('');
  const [cred, setCred] = useState('');
  const r = useApi<{ nhis: Nhi[] }>(`/nhis${qs({ search, class: cls, status, environment: env, owner, tier, credential_type: cred })}`);
  return html`<h1>NHIs</h1>
    <form class="filters" role="search" onSubmit=${(e: Event) => e.preventDefault()}>
      ${field('Search', search, setSearch)}
      ${field('Class', cls, setCls, ['agent', 'workload', 'runner', 'tool'])}
      ${field('Status', status, setStatus, ['active', 'disabled'])}
      ${field('Owner', owner, setOwner)}
      ${field('Environment', env, setEnv)}
      ${field('Tier', tier, setTier, ['read', 'write', 'admin'])}
      ${field('Credential type', cred, setCred, ['federated', 'private_key_jwt', 'static_secret'])}
    </form>
    <${Status} loading=${r.loading && !r.data} error=${r.error} />
    ${r.data && html`<table>
      <caption>${r.data.nhis.length} non-human identities</caption>
      <thead><tr><th scope="col">NHI</th><th scope="col">Class</th><th scope="col">Owner</th><th scope="col">System</th><th scope="col">Environment</th><th scope="col">Tier</th><th scope="col">Status</th></tr></thead>
      <tbody>${r.data.nhis.map((n) => html`<tr>
        <th scope="row"><a href=${`#/nhis/${encodeURIComponent(n.id)}`}>${n.id}</a></th><td>${n.class}</td><td>${n.owner}</td><td>${n.system}</td>
        <td>${n.environment}</td><td>${n.tier}</td><td><${Badge} value=${n.status} /></td></tr>`)}</tbody>
    </table>`}`;
}

export function NhiPage(p: { id: string; session: Session }) {
  const live = useLive(['revocation.', 'kill.', 'signal.', 'approval.', 'detection.']);
  const enc = encodeURIComponent(p.id);
  const nhi = useApi<Nhi & { credentials: Credential[]; grants: Grant[] }>(`/nhis/${enc}`, [live]);
  const tokens = useApi<{ tokens: Token[] }>(`/tokens${qs({ nhi: p.id, limit: 20 })}`, [live]);
  const calls = useApi<{ records: AuditRecord[] }>(`/audit${qs({ actor: p.id, limit: 20 })}`, [live]);
  const risk = useApi<Risk>(`/nhis/${enc}/risk`, [live]);
  const findings = useApi<{ findings: Finding[] }>(`/findings${qs({ nhi: p.id })}`, [live]);
  const restrictions = useApi<{ restrictions: Array<{ id: string; kind: string; fallback_tier: string; reason: string; created_at: number }> }>(`/restrictions${qs({ nhi: p.id })}`, [live]);
  const reloadAll = () => [nhi, tokens, calls, restrictions, risk].forEach((x) => x.reload());
  const admin = p.session.role === 'admin';
  const n = nhi.data;
  // Grants governance counts as standing privilege (unused for risk.unused_grant_after): named in that contribution.
  const unusedDetail = risk.data?.contributions.find((c) => c.factor === 'unused_grants')?.detail ?? '';
  const unused = new Set((n?.grants ?? []).map((g) => g.tool).filter((t) => unusedDetail.split(/[ ,]+/).includes(t)));
  if (!n) return html`<h1>${p.id}</h1><${Status} loading=${nhi.loading} error=${nhi.error} />`;
  const act = async (what: string, call: () => Promise<unknown>) => {
    await call();
    notify(what);
    reloadAll();
  };
  return html`<h1>${n.id} <${Badge} value=${n.status} /></h1>
    <p class="muted">${n.description ?? ''}</p>
    <div class="grid">
      <${Panel} title="Identity">
        <dl class="facts">
          <dt>Owner</dt><dd data-owner>${n.owner}</dd><dt>System</dt><dd>${n.system}</dd><dt>Class</dt><dd>${n.class}</dd>
          <dt>Environment</dt><dd>${n.environment}</dd><dt>Tier</dt><dd>${n.tier}</dd><dt>Source</dt><dd>${n.source}</dd>
          <dt>Created</dt><dd><${Time} ms=${n.created_at} /></dd>
        </dl>
        ${restrictions.data?.restrictions.map((r) => html`<p class="warn">Restricted: ${r.kind} to tier ${r.fallback_tier} (${r.reason}), <${Time} ms=${r.created_at} /></p>`)}
      <//>
      <${Panel} title="Risk">
        <${Status} loading=${risk.loading && !risk.data} error=${risk.error} what="the risk score" />
        ${risk.data && html`<${RiskScore} risk=${risk.data} />`}
      <//>
    </div>
    ${admin && html`<${Panel} title="Actions">
      <div class="buttons">
        <${ConfirmAction} label="Revoke tokens" danger title=${`Revoke every token of ${n.id}?`}
          consequence=${`Every token issued to ${n.id} until now stops working at once, at the broker and at every proxy (also published to SSF receivers). ${n.id} can still obtain new tokens unless it is disabled.`}
          onConfirm=${(reason: string) => act(`Tokens of ${n.id} revoked`, () => api('POST', '/revocations', { nhi: n.id, ...(reason ? { reason } : {}) }))} />
        <${ConfirmAction} label="Step down" title=${`Step ${n.id} down?`}
          consequence=${`Raises a step_down signal for ${n.id}: it is restricted to the fallback token profile (the least dangerous tier) until an operator lifts the restriction. Recorded, audited and published.`}
          onConfirm=${(reason: string) => act(`${n.id} stepped down`, () => api('POST', '/signals', { nhi: n.id, action: 'step_down', severity: 'high', reason: reason || 'stepped down from the console' }))} />
        ${n.status === 'active'
          ? html`<${ConfirmAction} label="Disable" danger title=${`Disable ${n.id}?`}
              consequence=${`${n.id} is disabled: the broker issues it no token and the proxy refuses its calls until it is re-enabled.`}
              onConfirm=${(reason: string) => act(`${n.id} disabled`, () => api('POST', `/nhis/${enc}/disable`, reason ? { reason } : {}))} />`
          : html`<${ConfirmAction} label="Enable" title=${`Re-enable ${n.id}?`} consequence=${`${n.id} may obtain tokens and call its tools again.`}
              onConfirm=${(reason: string) => act(`${n.id} enabled`, () => api('POST', `/nhis/${enc}/enable`, reason ? { reason } : {}))} />`}
        ${(restrictions.data?.restrictions.length ?? 0) > 0 && html`<${ConfirmAction} label="Lift restriction" withReason=${false} title=${`Lift the restriction of ${n.id}?`}
          consequence=${`${n.id} gets its full tier back.`} onConfirm=${() => act('Restriction lifted', () => api('POST', `/restrictions/${enc}/lift`))} />`}
      </div>
    <//>`}
    <${Panel} title="Credentials">
      <table><thead><tr><th scope="col">Type</th><th scope="col">Detail</th><th scope="col">Age</th><th scope="col">Expires</th></tr></thead>
      <tbody>${n.credentials.map((c) => html`<tr>
        <td>${c.type}</td><td>${c.type === 'federated' ? `${c.trust}: ${c.subject}` : c.type === 'static_secret' ? `exception ${c.exception_ticket}` : 'key'}</td>
        <td data-age>${ago(c.last_rotated_at ?? c.created_at).replace(' ago', '')}</td><td><${Time} ms=${c.expires_at ?? c.exception_expires_at} /></td></tr>`)}</tbody></table>
    <//>
    <${Panel} title="Grants">
      <table><thead><tr><th scope="col">Tool</th><th scope="col">Actions</th><th scope="col">Last used</th><th scope="col">Change</th></tr></thead>
      <tbody>${n.grants.map((g) => html`<tr>
        <td>${g.tool}</td><td>${g.actions.join(', ')}</td>
        <td>${g.last_used_at === null ? html`<${Badge} value="unused" />` : html`<${Time} ms=${g.last_used_at} />`}${g.last_used_at !== null && unused.has(g.tool) ? html` <${Badge} value="unused" />` : ''}</td><td>${g.change_ref ?? ''}</td></tr>`)}</tbody></table>
    <//>
    <${Panel} title="Recent tokens">
      <${Status} loading=${tokens.loading && !tokens.data} error=${tokens.error} />
      ${tokens.data && html`<table><thead><tr><th scope="col">Issued</th><th scope="col">Tool</th><th scope="col">Scope</th><th scope="col">Tier</th><th scope="col">Binding</th><th scope="col">Expires</th></tr></thead>
      <tbody>${tokens.data.tokens.map((t) => html`<tr><td><${Time} ms=${t.issued_at} /></td><td>${t.tool.replace(/^.*\/tools\//, '')}</td><td>${t.scope}</td><td>${t.tier}</td><td>${t.bound}</td><td><${Time} ms=${t.expires_at} /></td></tr>`)}</tbody></table>`}
    <//>
    <${Panel} title="Recent calls and events">
      <${Status} loading=${calls.loading && !calls.data} error=${calls.error} />
      ${calls.data && html`<${AuditTable} records=${calls.data.records} />`}
      <p><a href=${`#/audit/actor=${enc}`}>Search the audit log for ${n.id}</a></p>
    <//>
    <${Panel} title="Findings">
      <${Status} loading=${findings.loading && !findings.data} error=${findings.error} what="findings" />
      ${findings.data && html`<${FindingsTable} findings=${findings.data.findings} session=${p.session} onChange=${() => { findings.reload(); risk.reload(); }} />`}
    <//>
    <${PlaybookActions} nhi=${p.id} session=${p.session} live=${live} onChange=${reloadAll} />`;
}

export function AuditTable(p: { records: AuditRecord[] }) {
  return html`<table class="audit"><thead><tr><th scope="col">When</th><th scope="col">Type</th><th scope="col">Actor</th><th scope="col">Subject</th><th scope="col">Tool</th><th scope="col">Decision</th><th scope="col">Detail</th><th scope="col">Trace</th></tr></thead>
    <tbody>${p.records.map((r) => html`<tr>
      <td><${Time} ms=${r.ts} /></td><td>${r.type}</td><td>${r.actor ?? ''}</td><td>${r.subject ?? ''}</td><td>${r.tool ?? ''}</td>
      <td>${r.decision && html`<${Badge} value=${r.decision} />`}</td>
      <td class="detail">${String(r.data.action ?? r.data.reason ?? '')}</td>
      <td>${r.traceId ? html`<a href=${`#/audit/trace_id=${r.traceId}`} title=${r.traceId}>${r.traceId.slice(0, 8)}…</a>` : ''}</td></tr>`)}</tbody></table>`;
}
