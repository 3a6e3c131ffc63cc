import { adminNoun, type Invocation } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';

/** `mandate approval`: the calls waiting for a human's approval. */
export const approval = adminNoun({
  name: 'approval',
  summary: 'calls held for human approval: list, approve, deny (over the admin API)',
  usage: '  mandate approval list [--status S]  |  mandate approval approve|deny APPROVAL_ID [--reason R]',
  verbs: {
    list: async ({ client, s, print }) => {
      const r = (await client.call('GET', '/approvals', { query: { status: s('status') ?? 'pending', nhi: s('nhi'), limit: s('limit') } })) as { approvals: Record<string, unknown>[] };
      print(r, () => table(r.approvals.map((a) => ({ ...a, requested_at: isoTime(a.requested_at), expires_at: isoTime(a.expires_at) })), ['id', 'nhi', 'tool', 'action', 'args_digest', 'status', 'requested_at', 'expires_at']));
      return EXIT.ok;
    },
    approve: decide,
    deny: decide,
  },
});

/** `approval approve|deny ID`: the verb names the API call (the table routes only these two here). */
async function decide({ verb, client, s, arg0, print }: Invocation): Promise<number> {
  const r = (await client.call('POST', `/approvals/${encodeURIComponent(arg0())}/${String(verb)}`, { body: s('reason') ? { reason: s('reason') } : {} })) as Record<string, unknown>;
  print(r, () => `${String(r.id)} ${String(r.status)}: ${String(r.nhi)} may${r.status === 'approved' ? '' : ' not'} ${String(r.action)} on ${String(r.tool)}`);
  return EXIT.ok;
}
