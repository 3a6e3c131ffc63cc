import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';

/** `mandate token`: the access tokens the broker issued. */
export const token = adminNoun({
  name: 'token',
  summary: 'the access tokens issued: list (over the admin API)',
  usage: '  mandate token list [--nhi ID] [--tool ID] [--active]',
  verbs: {
    list: async ({ client, values, s, print }) => {
      const r = (await client.call('GET', '/tokens', { query: { nhi: s('nhi'), tool: s('tool'), active: values.active ? 'true' : undefined, limit: s('limit') } })) as { tokens: Record<string, unknown>[] };
      print(r, () => table(r.tokens.map((t) => ({ ...t, issued_at: isoTime(t.issued_at), expires_at: isoTime(t.expires_at) })), ['jti', 'nhi', 'tool', 'scope', 'tier', 'bound', 'issued_at', 'expires_at']));
      return EXIT.ok;
    },
  },
});
