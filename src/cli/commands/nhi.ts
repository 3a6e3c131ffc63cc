import { adminNoun, type Invocation } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { details, isoTime, table } from '../format.js';

/** `mandate nhi`: the inventory of non-human identities. */
export const nhi = adminNoun({
  name: 'nhi',
  summary: 'the non-human identities: list, show, add, disable, enable (over the admin API)',
  usage: `  mandate nhi list [--class C] [--owner O] [--environment E] [--tier T] [--status S] [--search Q]
  mandate nhi show ID
  mandate nhi add --id ID --class agent|workload|runner|tool --owner O --system S --tier read|write|admin [--environment E]
  mandate nhi disable ID [--reason R]  |  mandate nhi enable ID`,
  verbs: {
    list: async ({ client, s, print }) => {
      const r = (await client.call('GET', '/nhis', {
        query: { class: s('class'), owner: s('owner'), environment: s('environment'), tier: s('tier'), status: s('status'), search: s('search') },
      })) as { nhis: Record<string, unknown>[] };
      print(r, () => table(r.nhis, ['id', 'class', 'owner', 'system', 'environment', 'tier', 'status', 'source']));
      return EXIT.ok;
    },
    show: async ({ client, arg0, print }) => {
      const r = (await client.call('GET', `/nhis/${encodeURIComponent(arg0())}`)) as Record<string, unknown> & {
        credentials: Record<string, unknown>[];
        grants: Record<string, unknown>[];
      };
      print(r, () =>
        [
          details(r, ['id', 'class', 'owner', 'system', 'environment', 'tier', 'status', 'source', 'description']),
          '',
          'CREDENTIALS',
          table(r.credentials.map((c) => ({ ...c, created_at: isoTime(c.created_at), exception_expires_at: isoTime(c.exception_expires_at) })), ['id', 'type', 'trust', 'subject', 'exception_ticket', 'exception_expires_at', 'created_at']),
          '',
          'GRANTS',
          table(r.grants, ['id', 'tool', 'actions', 'source', 'change_ref']),
        ].join('\n'),
      );
      return EXIT.ok;
    },
    add: async ({ client, s, need, print }) => {
      const r = (await client.call('POST', '/nhis', {
        body: {
          id: need('id'), class: need('class'), owner: need('owner'), system: need('system'), tier: need('tier'),
          ...(s('environment') ? { environment: s('environment') } : {}), ...(s('description') ? { description: s('description') } : {}),
        },
      })) as Record<string, unknown>;
      print(r, () => `added ${String(r.id)}`);
      return EXIT.ok;
    },
    disable: setStatus,
    enable: setStatus,
  },
});

/** `nhi disable|enable ID`: the verb names the API call (the table routes only these two here). */
async function setStatus({ verb, client, s, arg0, print }: Invocation): Promise<number> {
  const r = (await client.call('POST', `/nhis/${encodeURIComponent(arg0())}/${String(verb)}`, { body: s('reason') ? { reason: s('reason') } : {} })) as Record<string, unknown>;
  print(r, () => `${String(r.id)} is ${String(r.status)}`);
  return EXIT.ok;
}
