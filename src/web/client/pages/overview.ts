import { html } from '../html.js';
import { qs } from '../api.js';
import { useLive } from '../live.js';
import { MintingRate, ProgrammeTrend, SecretAges, TimeToRevoke, type AgeBin, type MintingSeries } from '../charts.js';
import { Badge, Panel, Status, Time, duration, useApi } from '../ui.js';
import { SEVERITIES, type Severity } from './governance.js';
import type { Approval } from './approvals.js';
import type { Signal } from './signals.js';

interface AuditRow { id: string; ts: number; type: string; actor: string | null; subject: string | null; tool: string | null; data: Record<string, unknown> }

/** GET /metrics/programme: now, and the last snapshot of each week (oldest first). */
interface ProgrammeMetrics {
  at: number; nhis: number; federated_ratio: number; static_secret_ratio: number; private_key_ratio: number; median_secret_age_days: number | null;
  admin_nhis: number; long_lived_credentials: number; revoke_mean_s: number | null; revoke_p99_s: number | null; revoke_samples: number;
  exceptions_open: number; exceptions_overdue: number; unused_grants: number; findings_open: Record<Severity, number>;
}
interface Programme { current: ProgrammeMetrics; trend: Array<{ day: string; taken_at: number; metrics: ProgrammeMetrics }> }

type Num = number | null | undefined;
const pct = (x: Num) => (x === null || x === undefined ? '—' : `${Math.round(x * 1000) / 10}%`);
const days = (x: Num) => (x === null || x === undefined ? '—' : `${x} d`);
const secs = (x: Num) => (x === null || x === undefined ? '—' : duration(x));
const plain = (x: Num) => (x === null || x === undefined ? '—' : String(x));
/** [label, value, format, higher is better]. */
const METRICS: Array<[string, (m: ProgrammeMetrics) => Num, (x: Num) => string, boolean]> = [
  ['Federated only (no stored secret)', (m) => m.federated_ratio, pct, true],
  ['Median secret age', (m) => m.median_secret_age_days, days, false],
  ['High-privilege (admin-tier) NHIs', (m) => m.admin_nhis, plain, false],
  ['Time to revoke (mean)', (m) => m.revoke_mean_s, secs, false],
  ['Time to revoke (p99)', (m) => m.revoke_p99_s, secs, false],
  ['Holding a static secret', (m) => m.static_secret_ratio, pct, false],
  ['On keys (private_key_jwt)', (m) => m.private_key_ratio, pct, true],
  ['Long-lived credentials', (m) => m.long_lived_credentials, plain, false],
  ['Exceptions open', (m) => m.exceptions_open, plain, false],
  ['Exceptions overdue', (m) => m.exceptions_overdue, plain, false],
  ['Unused grants', (m) => m.unused_grants, plain, false],
  ['Active NHIs', (m) => m.nhis, plain, true],
];

/** Monday (UTC) of the week of an instant, as YYYY-MM-DD (as governance groups its snapshots). */
function weekOf(ms: number): string {
  const d = new Date(ms);
  return new Date(ms - ((d.getUTCDay() + 6) % 7) * 86_400_000).toISOString().slice(0, 10);
}

function Metrics(p: { data: Programme }) {
  const now = p.data.current;
  // The trend's last entry may be this week's own snapshot: compare with the weeks before.
  const earlier = p.data.trend.filter((t) => weekOf(t.taken_at) < weekOf(now.at));
  const prev = earlier[earlier.length - 1]?.metrics;
  return html`<table data-metrics><thead><tr><th scope="col">Metric</th><th scope="col">Now</th><th scope="col">Last week</th><th scope="col">Trend (weekly)</th></tr></thead>
    <tbody>${METRICS.map(([label, get, fmt, up]) => {
      const a = get(now);
      const b = prev ? get(prev) : undefined;
      const arrow = a === null || a === undefined || b === null || b === undefined ? '' : a > b ? '▲' : a < b ? '▼' : '▶';
      const tone = arrow === '▲' || arrow === '▼' ? ((arrow === '▲') === up ? 'ok' : 'warn') : '';
      const series = [...earlier.map((t) => get(t.metrics)), a].map((x) => fmt(x)).join(' → ');
      return html`<tr><td>${label}</td><td>${fmt(a)}</td><td>${prev ? fmt(b) : '—'}</td>
        <td>${arrow && html`<span class=${tone} aria-label=${`${arrow === '▲' ? 'up' : arrow === '▼' ? 'down' : 'unchanged'} from ${fmt(b)}`}>${arrow}</span> `}<span class="muted">${earlier.length ? series : 'no earlier week yet'}</span></td></tr>`;
    })}</tbody></table>`;
}

export function Overview() {
  const live = useLive(['approval.', 'revocation.', 'kill.', 'detection.', 'signal.']);
  const metrics = useApi<Programme>('/metrics/programme', [live]);
  const findings = useApi<Record<'open' | 'acknowledged', Record<Severity, number>>>('/findings/summary', [live]);
  const approvals = useApi<{ approvals: Approval[] }>(`/approvals${qs({ status: 'pending' })}`, [live]);
  const revoked = useApi<{ records: AuditRow[] }>(`/audit${qs({ type: 'tokens.revoked', limit: 10 })}`, [live]);
  const kills = useApi<{ kill_switches: Array<{ id: string; scope: string; target: string | null; reason: string; created_at: number }> }>('/kill', [live]);
  const signals = useApi<{ signals: Signal[] }>(`/signals${qs({ limit: 500 })}`, [live]);
  const minting = useApi<{ hours: number[]; series: MintingSeries[] }>(`/metrics/minting${qs({ hours: 48, limit: 5 })}`, [live]);
  const ages = useApi<{ bins: AgeBin[] }>('/metrics/credential-ages');
  const pending = (approvals.data?.approvals ?? []).filter((a) => a.status === 'pending');
  const f = findings.data;
  return html`<h1>Overview</h1>
    <div class="grid">
      <${Panel} title="Pending approvals">
        <${Status} loading=${approvals.loading && !approvals.data} error=${approvals.error} />
        <p class="big" data-pending>${pending.length}</p>
        <ul>${pending.slice(0, 5).map((a) => html`<li><a href="#/approvals">${a.nhi}: ${a.tool}.${a.action}</a> <${Time} ms=${a.requested_at} /></li>`)}</ul>
      <//>
      <${Panel} title="Open findings by severity">
        <${Status} loading=${findings.loading && !findings.data} error=${findings.error} what="findings" />
        ${f && html`<ul class="severities" data-severities>${SEVERITIES.map((s) => html`<li data-severity=${s}><a href="#/findings"><${Badge} value=${s} /></a> <strong>${f.open[s]}</strong>${f.acknowledged[s] ? html` <span class="muted">(+${f.acknowledged[s]} acknowledged)</span>` : ''}</li>`)}</ul>`}
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
      ${ages.data ? html`<${SecretAges} bins=${ages.data.bins} />` : html`<${Status} loading=${ages.loading} error=${ages.error} what="credential ages" />`}
      ${signals.data && html`<${TimeToRevoke} points=${signals.data.signals.filter((s) => s.applied_at !== null).map((s) => [s.applied_at!, (s.applied_at! - s.received_at) / 1000] as [number, number])} />`}
      ${minting.data ? html`<${MintingRate} hours=${minting.data.hours} series=${minting.data.series} />` : html`<${Status} loading=${minting.loading} error=${minting.error} what="the minting rate" />`}
      ${metrics.data && html`<${ProgrammeTrend} points=${metrics.data.trend.map((t) => ({
        at: t.taken_at, federated_pct: t.metrics.federated_ratio * 100, median_age_days: t.metrics.median_secret_age_days, admin: t.metrics.admin_nhis, revoke_mean_s: t.metrics.revoke_mean_s,
      }))} />`}
    </div>`;
}
