import { parseArgs } from 'node:util';
import { AdminClient, CliError, EXIT } from './admin-client.js';
import { details, isoTime, table } from './format.js';

type Out = { log: (s: string) => void; err: (s: string) => void };

export const GOVERNANCE_USAGE = `Governance (over the admin API):
  mandate finding list [--nhi ID] [--detection D] [--status open|acknowledged|resolved] [--min-severity S] [--limit N]
  mandate finding show ID  |  mandate finding ack ID [--note N]  |  mandate finding resolve ID [--note N]
  mandate finding mute --nhi ID --detection D --until YYYY-MM-DD --reason R  |  mandate finding mutes  |  mandate finding unmute MUTE_ID
  mandate report top [--limit 20]              the riskiest NHIs and why
  mandate report metrics [--markdown] [--weeks N]   programme metrics and their weekly trend
  mandate playbook actions [--nhi ID]  |  mandate playbook undo ACTION_ID   undo a step-down or disable`;

const OPTIONS = {
  json: { type: 'boolean' }, markdown: { type: 'boolean' }, url: { type: 'string' }, token: { type: 'string' }, config: { type: 'string' },
  nhi: { type: 'string' }, detection: { type: 'string' }, status: { type: 'string' }, 'min-severity': { type: 'string' }, limit: { type: 'string' },
  note: { type: 'string' }, until: { type: 'string' }, reason: { type: 'string' }, weeks: { type: 'string' },
} as const;

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

/** `mandate finding …`, `mandate playbook …`, `mandate report top|metrics`. */
export async function governanceCommand(noun: string, verb: string | undefined, argv: string[], out: Out, env: NodeJS.ProcessEnv): Promise<number> {
  const { values: v, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const client = new AdminClient(v.url ?? env.MANDATE_URL ?? 'http://127.0.0.1:8080', v.token ?? env.MANDATE_TOKEN);
  const print = (body: unknown, human: () => string) => out.log(v.json ? JSON.stringify(body, null, 2) : human());
  const arg0 = () => {
    if (!positionals[0]) throw new CliError(`"${noun} ${verb}" needs an id`, EXIT.usage);
    return encodeURIComponent(positionals[0]);
  };
  const need = (k: 'nhi' | 'detection' | 'until' | 'reason') => {
    if (!v[k]) throw new CliError(`--${k} is required for "${noun} ${verb}"`, EXIT.usage);
    return v[k]!;
  };
  const findingRow = (f: Record<string, unknown>) => ({ ...f, first_seen: isoTime(f.first_seen), last_seen: isoTime(f.last_seen) });
  switch (`${noun} ${verb}`) {
    case 'report top': {
      const r = (await client.call('GET', '/risk', { query: { limit: v.limit ?? '20' } })) as { scores: Score[] };
      print(r, () => topReport(r.scores));
      return EXIT.ok;
    }
    case 'report metrics': {
      const r = (await client.call('GET', '/metrics/programme', { query: { weeks: v.weeks } })) as Parameters<typeof metricsReport>[0];
      print(r, () => metricsReport(r, v.markdown ? 'markdown' : 'table'));
      return EXIT.ok;
    }
    case 'finding list': {
      const r = (await client.call('GET', '/findings', {
        query: { nhi: v.nhi, detection: v.detection, status: v.status, min_severity: v['min-severity'], limit: v.limit },
      })) as { findings: Record<string, unknown>[] };
      print(r, () => table(r.findings.map(findingRow), ['id', 'nhi', 'detection', 'severity', 'status', 'count', 'last_seen', 'title']));
      return EXIT.ok;
    }
    case 'finding show': {
      const r = (await client.call('GET', `/findings/${arg0()}`)) as Record<string, unknown>;
      print(r, () => details(findingRow(r), ['id', 'nhi', 'detection', 'key', 'severity', 'status', 'title', 'count', 'first_seen', 'last_seen', 'status_by', 'status_note', 'evidence']));
      return EXIT.ok;
    }
    case 'finding ack':
    case 'finding resolve': {
      const r = (await client.call('POST', `/findings/${arg0()}/${verb}`, { body: v.note ? { note: v.note } : {} })) as Record<string, unknown>;
      print(r, () => `${String(r.id)} ${String(r.status)}`);
      return EXIT.ok;
    }
    case 'finding mute': {
      const r = (await client.call('POST', '/mutes', { body: { nhi: need('nhi'), detection: need('detection'), until: need('until'), reason: need('reason') } })) as Record<string, unknown>;
      print(r, () => `muted ${String(r.detection)} for ${String(r.nhi)} until ${isoTime(r.until)} (${String(r.id)})`);
      return EXIT.ok;
    }
    case 'finding mutes': {
      const r = (await client.call('GET', '/mutes')) as { mutes: Record<string, unknown>[] };
      print(r, () => table(r.mutes.map((m) => ({ ...m, until: isoTime(m.until) })), ['id', 'nhi', 'detection', 'until', 'reason', 'created_by']));
      return EXIT.ok;
    }
    case 'finding unmute': {
      const r = await client.call('DELETE', `/mutes/${arg0()}`);
      print(r, () => `unmuted ${positionals[0]}`);
      return EXIT.ok;
    }
    case 'playbook actions': {
      const r = (await client.call('GET', '/playbook-actions', { query: { nhi: v.nhi, limit: v.limit } })) as { actions: Record<string, unknown>[] };
      print(r, () => table(r.actions.map((a) => ({ ...a, created_at: isoTime(a.created_at), undone_at: isoTime(a.undone_at) })),
        ['id', 'playbook', 'nhi', 'action', 'dry_run', 'finding_id', 'signal_id', 'created_at', 'undone_at']));
      return EXIT.ok;
    }
    case 'playbook undo': {
      const r = (await client.call('POST', `/playbook-actions/${arg0()}/undo`)) as Record<string, unknown>;
      print(r, () => `undid ${String(r.action)} of ${String(r.nhi)} (${String(r.id)})`);
      return EXIT.ok;
    }
    default:
      throw new CliError(`unknown command "${[noun, verb].filter(Boolean).join(' ')}"\n\n${GOVERNANCE_USAGE}`, EXIT.usage);
  }
}
