import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { details, table } from '../format.js';

/** `mandate tool`: the tools Mandate proxies (declared in the config). */
export const tool = adminNoun({
  name: 'tool',
  summary: 'the tools behind the proxy: list, show (over the admin API)',
  usage: '  mandate tool list  |  mandate tool show ID',
  verbs: {
    list: async ({ client, print }) => {
      const r = (await client.call('GET', '/tools')) as { tools: Record<string, unknown>[] };
      print(r, () => table(r.tools.map((t) => ({ ...t, actions: ((t.config as { actions?: { name: string }[] }).actions ?? []).map((a) => a.name) })), ['id', 'kind', 'upstream', 'actions', 'source']));
      return EXIT.ok;
    },
    show: async ({ client, arg0, print }) => {
      const r = (await client.call('GET', `/tools/${encodeURIComponent(arg0())}`)) as Record<string, unknown> & { config: { actions?: Record<string, unknown>[] } };
      print(r, () => [details(r, ['id', 'kind', 'upstream', 'description', 'source']), '', 'ACTIONS', table(r.config.actions ?? [], ['name', 'method', 'path', 'tier'])].join('\n'));
      return EXIT.ok;
    },
  },
});
