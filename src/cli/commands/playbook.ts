import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';
import { GOVERNANCE_OPTIONS, GOVERNANCE_USAGE, PLAYBOOK_USAGE } from '../governance.js';

/** `mandate playbook`: what the governance playbooks did, and undoing it. */
export const playbook = adminNoun({
  name: 'playbook',
  summary: 'what the playbooks did: actions, undo (over the admin API)',
  usage: PLAYBOOK_USAGE,
  options: GOVERNANCE_OPTIONS,
  unknownUsage: GOVERNANCE_USAGE,
  verbs: {
    actions: async ({ client, s, print }) => {
      const r = (await client.call('GET', '/playbook-actions', { query: { nhi: s('nhi'), limit: s('limit') } })) as { actions: Record<string, unknown>[] };
      print(r, () => table(r.actions.map((a) => ({ ...a, created_at: isoTime(a.created_at), undone_at: isoTime(a.undone_at) })),
        ['id', 'playbook', 'nhi', 'action', 'dry_run', 'finding_id', 'signal_id', 'created_at', 'undone_at']));
      return EXIT.ok;
    },
    undo: async ({ client, arg0, print }) => {
      const r = (await client.call('POST', `/playbook-actions/${encodeURIComponent(arg0())}/undo`)) as Record<string, unknown>;
      print(r, () => `undid ${String(r.action)} of ${String(r.nhi)} (${String(r.id)})`);
      return EXIT.ok;
    },
  },
});
