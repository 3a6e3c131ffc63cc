import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { table } from '../format.js';

/** `mandate grant`: which NHI may call which actions of which tool. */
export const grant = adminNoun({
  name: 'grant',
  summary: 'the grants (NHI → tool actions): list, add, remove (over the admin API)',
  usage: `  mandate grant list [--nhi ID] [--tool ID]
  mandate grant add --nhi ID --tool ID --actions a,b [--change-ref REF]  |  mandate grant remove GRANT_ID`,
  verbs: {
    list: async ({ client, s, print }) => {
      const r = (await client.call('GET', '/grants', { query: { nhi: s('nhi'), tool: s('tool') } })) as { grants: Record<string, unknown>[] };
      print(r, () => table(r.grants, ['id', 'nhi', 'tool', 'actions', 'source', 'change_ref']));
      return EXIT.ok;
    },
    add: async ({ client, s, need, print }) => {
      const r = (await client.call('POST', '/grants', {
        body: { nhi: need('nhi'), tool: need('tool'), actions: need('actions').split(',').map((a) => a.trim()).filter(Boolean), ...(s('change-ref') ? { change_ref: s('change-ref') } : {}) },
      })) as Record<string, unknown>;
      print(r, () => `granted ${String(r.nhi)} → ${String(r.tool)}: ${(r.actions as string[]).join(', ')} (${String(r.id)})`);
      return EXIT.ok;
    },
    remove: async ({ client, arg0, positionals, print }) => {
      const r = await client.call('DELETE', `/grants/${encodeURIComponent(arg0())}`);
      print(r, () => `removed ${positionals[0]}`);
      return EXIT.ok;
    },
  },
});
