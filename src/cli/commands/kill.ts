import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';
import { revokeOrKill } from './revoke.js';

/** `mandate kill`: kill switches, which refuse every call in their scope until lifted. */
export const kill = adminNoun({
  name: 'kill',
  summary: 'kill switches: engage (for an NHI, a tool or everything), list, lift (over the admin API)',
  usage: '  mandate kill --nhi ID | --tool ID | --all --reason R   |  mandate kill list  |  mandate kill lift KILL_ID',
  verbs: {
    list: async ({ client, print }) => {
      const r = (await client.call('GET', '/kill')) as { kill_switches: Record<string, unknown>[] };
      print(r, () => table(r.kill_switches.map((k) => ({ ...k, created_at: isoTime(k.created_at) })), ['id', 'scope', 'target', 'reason', 'created_by', 'created_at']));
      return EXIT.ok;
    },
    lift: async ({ client, arg0, positionals, print }) => {
      const r = await client.call('DELETE', `/kill/${encodeURIComponent(arg0())}`);
      print(r, () => `lifted ${positionals[0]}`);
      return EXIT.ok;
    },
  },
  otherwise: (argv, ctx) => revokeOrKill('kill', argv, ctx),
});
