import { adminNoun, type Invocation } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { details, isoTime, table } from '../format.js';
import { FINDING_USAGE, GOVERNANCE_OPTIONS, GOVERNANCE_USAGE } from '../governance.js';

const findingRow = (f: Record<string, unknown>) => ({ ...f, first_seen: isoTime(f.first_seen), last_seen: isoTime(f.last_seen) });

/** `mandate finding`: what the detections found, and the mutes that silence them. */
export const finding = adminNoun({
  name: 'finding',
  summary: 'governance findings: list, show, ack, resolve, mute, mutes, unmute (over the admin API)',
  usage: FINDING_USAGE,
  options: GOVERNANCE_OPTIONS,
  unknownUsage: GOVERNANCE_USAGE,
  verbs: {
    list: async ({ client, s, print }) => {
      const r = (await client.call('GET', '/findings', {
        query: { nhi: s('nhi'), detection: s('detection'), status: s('status'), min_severity: s('min-severity'), limit: s('limit') },
      })) as { findings: Record<string, unknown>[] };
      print(r, () => table(r.findings.map(findingRow), ['id', 'nhi', 'detection', 'severity', 'status', 'count', 'last_seen', 'title']));
      return EXIT.ok;
    },
    show: async ({ client, arg0, print }) => {
      const r = (await client.call('GET', `/findings/${encodeURIComponent(arg0())}`)) as Record<string, unknown>;
      print(r, () => details(findingRow(r), ['id', 'nhi', 'detection', 'key', 'severity', 'status', 'title', 'count', 'first_seen', 'last_seen', 'status_by', 'status_note', 'evidence']));
      return EXIT.ok;
    },
    ack: setStatus,
    resolve: setStatus,
    mute: async ({ client, need, print }) => {
      const r = (await client.call('POST', '/mutes', { body: { nhi: need('nhi'), detection: need('detection'), until: need('until'), reason: need('reason') } })) as Record<string, unknown>;
      print(r, () => `muted ${String(r.detection)} for ${String(r.nhi)} until ${isoTime(r.until)} (${String(r.id)})`);
      return EXIT.ok;
    },
    mutes: async ({ client, print }) => {
      const r = (await client.call('GET', '/mutes')) as { mutes: Record<string, unknown>[] };
      print(r, () => table(r.mutes.map((m) => ({ ...m, until: isoTime(m.until) })), ['id', 'nhi', 'detection', 'until', 'reason', 'created_by']));
      return EXIT.ok;
    },
    unmute: async ({ client, arg0, positionals, print }) => {
      const r = await client.call('DELETE', `/mutes/${encodeURIComponent(arg0())}`);
      print(r, () => `unmuted ${positionals[0]}`);
      return EXIT.ok;
    },
  },
});

/** `finding ack|resolve ID`: the verb names the API call (the table routes only these two here). */
async function setStatus({ verb, client, s, arg0, print }: Invocation): Promise<number> {
  const r = (await client.call('POST', `/findings/${encodeURIComponent(arg0())}/${String(verb)}`, { body: s('note') ? { note: s('note') } : {} })) as Record<string, unknown>;
  print(r, () => `${String(r.id)} ${String(r.status)}`);
  return EXIT.ok;
}
