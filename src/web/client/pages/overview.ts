import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, qs } from '../api.js';
import { useLive } from '../live.js';
import { MintingRate, SecretAges, TimeToRevoke } from '../charts.js';
import { Badge, Panel, Status, Time, useApi } from '../ui.js';
import { SEVERITIES, type Finding } from './governance.js';
import type { Approval } from './approvals.js';
import type { Signal } from './signals.js';

interface AuditRow { id: string; ts: number; type: string; actor: string | null; subject: string | null; tool: string | null; data: Record<string, unknown> }

/** Programme metrics are governance's; any shape of { name: number | { value, trend } } is shown. */
function Metrics(p: { data: Record<string, unknown> }) {
  const src = (p.data.metrics && typeof p.data.metrics === 'object' ? p.data.metrics : p.data) as Record<string, unknown>;
  const rows = Object.entries(src).map(([k, v]) => {
    const o = (typeof v === 'object' && v !== null ? v : { value: v }) as { value?: unknown; trend?: unknown; previous?: unknown };
    const trend = Array.isArray(o.trend) ? (o.trend as number[]) : [];
    const prev = typeof o.previous === 'number' ? o.previous : trend.length > 1 ? trend[trend.length - 2] : undefined;
    const value = typeof o.value === 'number' ? o.value : trend[trend.length - 1];
    const arrow = prev === undefined || value === undefined ? '' : value > prev ? '▲' : value < prev ? '▼' : '▶';
    return { k, value, arrow, prev };
  });
  return html`<table><thead><tr><th scope="col">Metric</th><th scope="col">Now</th><th scope="col">Trend</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr><td>${r.k.replace(/_/g, ' ')}</td><td>${r.value === undefined ? '—' : String(r.value)}</td>
      <td>${r.arrow && html`<span aria-label=${`previously ${r.prev}`}>${r.arrow} from ${r.prev}</span>`}</td></tr>`)}</tbody></table>`;
}

/** Credential ages of every NHI (at most 100, one request each: the admin API has no bulk call). */
function useSecretAges(): number[] | undefined {
  const [ages, setAges] = useState<number[] | undefined>();
  useEffect(() => {
    let gone = false;
    void (async () => {
      const { nhis } = await api<{ nhis: Array<{ id: string }> }>('GET', '/nhis');
      const details = await Promise.all(nhis.slice(0, 100).map((n) => api<{ credentials: Array<{ created_at: number; last_rotated_at: number | null }> }>('GET', `/nhis/${encodeURIComponent(n.id)}`)));
      const now = Date.now();
      if (!gone) setAges(details.flatMap((d) => d.credentials.map((c) => (now - (c.last_rotated_at ?? c.created_at)) / 86_400_000)));
    })().catch(() => setAges([]));
    return () => {
      gone = true;
    };
  }, []);
  return ages;
}

export function Overview() {
  const live = useLive(['approval.', 'revocation.', 'kill.', 'detection.', 'signal.']);
  const metrics = useApi<Record<string, unknown>>('/metrics/programme', [live]);
  const findings = useApi<{ findings: Finding[] }>(`/findings${qs({ status: 'open', limit: 1000 })}`, [live]);
  const approvals = useApi<{ approvals: Approval[] }>(`/approvals${qs({ status: 'pending' })}`, [live]);
  const revoked = useApi<{ records: AuditRow[] }>(`/audit${qs({ type: 'tokens.revoked', limit: 10 })}`, [live]);
  const kills = useApi<{ kill_switches: Array<{ id: string; scope: string; target: string | null; reason: string; created_at: number }> }>('/kill', [live]);
  const signals = useApi<{ signals: Signal[] }>(`/signals${qs({ limit: 500 })}`, [live]);
  const tokens = useApi<{ tokens: Array<{ nhi: string; issued_at: number }> }>(`/tokens${qs({ limit: 1000 })}`);
  const ages = useSecretAges();
  const pending = (approvals.data?.approvals ?? []).filter((a) => a.status === 'pending');
  const bySeverity = SEVERITIES.map((s) => [s, (findings.data?.findings ?? []).filter((f) => f.severity === s).length] as const);
  return html`<h1>Overview</h1>
    <div class="grid">
      <${Panel} title="Pending approvals">
        <${Status} loading=${approvals.loading && !approvals.data} error=${approvals.error} />
        <p class="big" data-pending>${pending.length}</p>
        <ul>${pending.slice(0, 5).map((a) => html`<li><a href="#/approvals">${a.nhi}: ${a.tool}.${a.action}</a> <${Time} ms=${a.requested_at} /></li>`)}</ul>
      <//>
      <${Panel} title="Open findings by severity">
        <${Status} loading=${findings.loading && !findings.data} error=${findings.error} what="findings" />
        ${findings.data && html`<ul class="severities">${bySeverity.map(([s, n]) => html`<li><${Badge} value=${s} /> ${n}</li>`)}</ul>`}
      <//>
      <${Panel} title="Programme metrics">
        <${Status} loading=${metrics.loading && !metrics.data} error=${metrics.error} what="programme metrics" />
        ${metrics.data && html`<${Metrics} data=${metrics.data} />`}
      <//>
      <${Panel} title="Live revocations">
        <${Status} loading=${revoked.loading && !revoked.data} error=${revoked.error} />
        <ul data-revocations>
          ${kills.data?.kill_switches.map((k) => html`<li><${Badge} value="kill" /> ${k.scope} ${k.target ?? ''}: ${k.reason} <${Time} ms=${k.created_at} /></li>`)}
          ${revoked.data?.records.map((r) => html`<li><${Badge} value="revoked" /> ${r.subject ?? r.tool ?? 'all'}: ${String(r.data.reason ?? '')} <${Time} ms=${r.ts} /></li>`)}
        </ul>
      <//>
    </div>
    <div class="grid charts">
      ${ages ? html`<${SecretAges} agesDays=${ages} />` : html`<p class="muted">Loading credential ages…</p>`}
      ${signals.data && html`<${TimeToRevoke} points=${signals.data.signals.filter((s) => s.applied_at !== null).map((s) => [s.applied_at!, (s.applied_at! - s.received_at) / 1000] as [number, number])} />`}
      ${tokens.data && html`<${MintingRate} tokens=${tokens.data.tokens} />`}
    </div>`;
}
