import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';

/** `mandate audit`: the hash-chained audit log. */
export const audit = adminNoun({
  name: 'audit',
  summary: 'the hash-chained audit log: list, verify (over the admin API)',
  usage: `  mandate audit list [--type T] [--subject S] [--tool T] [--decision D] [--trace-id T] [--limit N]
  mandate audit verify`,
  verbs: {
    list: async ({ client, s, print }) => {
      const r = (await client.call('GET', '/audit', {
        query: { type: s('type'), subject: s('subject'), tool: s('tool'), decision: s('decision'), trace_id: s('trace-id'), limit: s('limit') },
      })) as { records: Record<string, unknown>[] };
      print(r, () => table(r.records.map((x) => ({ ...x, ts: isoTime(x.ts) })), ['seq', 'ts', 'type', 'actor', 'subject', 'tool', 'decision']));
      return EXIT.ok;
    },
    verify: async ({ client, print }) => {
      const r = (await client.call('POST', '/audit/verify')) as { ok: boolean; checked: number; headSeq: number; problems: { seq: number; kind: string; detail: string }[] };
      print(r, () =>
        r.ok
          ? `audit chain intact: ${r.checked} records, head at seq ${r.headSeq}`
          : `audit chain BROKEN: ${r.problems.length} problem(s) in ${r.checked} records\n${table(r.problems as never, ['seq', 'kind', 'detail'])}`,
      );
      return r.ok ? EXIT.ok : EXIT.failed;
    },
  },
});
