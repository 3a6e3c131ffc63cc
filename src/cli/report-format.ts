import { formatDuration, type MandateConfig } from '../core/index.js';
import { millis, table } from './format.js';

/** The token profile catalogue: each risk tier, its rules, and the actions that fall in it. */
export function profilesReport(cfg: Readonly<MandateConfig>, format: 'table' | 'markdown' | 'json'): string {
  const rows = cfg.tokens.profiles.map((p) => ({
    tier: p.name,
    ttl: formatDuration(p.ttl),
    binding: p.binding === 'required' ? 'DPoP or mTLS required' : 'optional',
    approval: p.approval ? 'human approval per call' : 'no',
    actions: cfg.tools.flatMap((t) => t.actions.filter((a) => a.tier === p.name).map((a) => `${t.id}.${a.name}`)),
    description: p.description ?? '',
  }));
  if (format === 'json') return JSON.stringify({ max_ttl: cfg.tokens.max_ttl, refresh_tokens: false, profiles: rows }, null, 2);
  if (format === 'table') return table(rows, ['tier', 'ttl', 'binding', 'approval', 'actions']);
  const esc = (x: string) => x.replace(/\|/g, '\\|');
  return [
    '# Token profiles',
    '',
    `Every token Mandate issues is for one tool, carries only the actions asked for and granted, and lives no longer than its tier allows (organisation ceiling: ${formatDuration(cfg.tokens.max_ttl)}). Machines get no refresh tokens: they re-federate with their workload identity.`,
    '',
    '| Tier | Lifetime | Sender constraint | Approval | Actions | Description |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${esc(r.tier)} | ${r.ttl} | ${r.binding} | ${r.approval} | ${r.actions.length ? r.actions.map((a) => `\`${a}\``).join(', ') : '–'} | ${esc(r.description)} |`),
    '',
  ].join('\n');
}

interface Contribution { factor: string; points: number; detail: string }
interface Score { nhi: string; score: number; tier: string; status: string; owner: string; contributions: Contribution[] }

/** `mandate report top`: one line per NHI, the score and the factors behind it. */
export function topReport(scores: Score[]): string {
  return table(scores.map((s, i) => ({
    rank: i + 1, nhi: s.nhi, score: s.score, tier: s.tier, owner: s.owner,
    why: s.contributions.map((c) => `${c.factor} +${c.points}${c.detail ? ` (${c.detail})` : ''}`).join('; ') || '-',
  })), ['rank', 'nhi', 'score', 'tier', 'owner', 'why']);
}

const METRIC_ROWS: Array<[string, string, (v: unknown) => string]> = [
  ['nhis', 'active NHIs', String],
  ['federated_ratio', 'on federation only', pct],
  ['static_secret_ratio', 'holding a static secret', pct],
  ['private_key_ratio', 'on private keys', pct],
  ['median_secret_age_days', 'median secret age (days)', opt],
  ['admin_nhis', 'admin-tier NHIs', String],
  ['long_lived_credentials', 'credentials living > max lifetime', String],
  ['revoke_mean_s', 'time to revoke, mean (s)', opt],
  ['revoke_p99_s', 'time to revoke, p99 (s)', opt],
  ['exceptions_open', 'open exceptions', String],
  ['exceptions_overdue', 'overdue exceptions', String],
  ['unused_grants', 'unused grants', String],
];

function pct(v: unknown): string {
  return typeof v === 'number' ? `${Math.round(v * 1000) / 10}%` : '-';
}
function opt(v: unknown): string {
  return v === null || v === undefined ? '-' : String(v);
}

/** `mandate report metrics`: now, and one column per week from the daily snapshots. */
export function metricsReport(body: { current: Record<string, unknown>; trend: Array<{ day: string; metrics: Record<string, unknown> }> }, format: 'table' | 'markdown'): string {
  const weeks = body.trend.slice(-8);
  const cols = [...weeks.map((w) => w.day), 'now'];
  const rows = METRIC_ROWS.map(([k, label, f]) => ({ metric: label, ...Object.fromEntries([...weeks.map((w) => [w.day, f(w.metrics[k])]), ['now', f(body.current[k])]]) }));
  const open = body.current.findings_open as Record<string, number> | undefined;
  if (open) rows.push({ metric: 'open findings (crit/high/med/low)', ...Object.fromEntries([...weeks.map((w) => [w.day, findingsCell(w.metrics.findings_open)]), ['now', findingsCell(open)]]) });
  if (format === 'table') return table(rows, ['metric', ...cols]);
  return [
    '# NHI programme metrics',
    '',
    `| Metric | ${cols.join(' | ')} |`,
    `|---|${cols.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.metric} | ${cols.map((c) => (r as Record<string, string>)[c] ?? '-').join(' | ')} |`),
    '',
  ].join('\n');
}

function findingsCell(v: unknown): string {
  const o = (v ?? {}) as Record<string, number>;
  return `${o.critical ?? 0}/${o.high ?? 0}/${o.medium ?? 0}/${o.low ?? 0}`;
}

export interface MttrStats { count: number; mean_ms: number | null; p50_ms: number | null; p99_ms: number | null; max_ms: number | null }
export interface MttrBody { signals: number; instances: number; applied_everywhere: MttrStats; first_denial: MttrStats }

/** `mandate report mttr`: the two times to revoke, as a table. */
export function mttrReport(r: MttrBody): string {
  const row = (measure: string, x: MttrStats) => ({ measure, signals: x.count, mean: millis(x.mean_ms), p50: millis(x.p50_ms), p99: millis(x.p99_ms), max: millis(x.max_ms) });
  return [
    `time to revoke over ${r.signals} enforced signal(s), ${r.instances} instance(s) reporting`,
    table([
      row('signal → applied at every instance', r.applied_everywhere),
      row('signal → first refused call', r.first_denial),
    ], ['measure', 'signals', 'mean', 'p50', 'p99', 'max']),
  ].join('\n');
}
