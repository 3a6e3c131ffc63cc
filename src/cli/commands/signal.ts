import { adminNoun } from '../admin-noun.js';
import { CliError, EXIT } from '../errors.js';
import { details, isoTime, table } from '../format.js';

/** `mandate signal`: risk signals, which revoke, step down, step up, disable or block. */
export const signal = adminNoun({
  name: 'signal',
  summary: 'risk signals and the restrictions they apply: raise, list, show, restore (over the admin API)',
  usage: `  mandate signal raise --nhi ID | --jti JTI --action revoke_tokens|step_down|step_up|disable|block --reason R
                       [--severity low|medium|high|critical] [--run ID] [--credential ID] [--tier T]
  mandate signal list [--nhi ID] [--limit N]  |  mandate signal show SIGNAL_ID
  mandate signal restore --nhi ID              lift a step-down / step-up`,
  verbs: {
    raise: async ({ client, s, need, print }) => {
      if (!s('nhi') && !s('jti')) throw new CliError('give --nhi or --jti for "signal raise"', EXIT.usage);
      const r = (await client.call('POST', '/signals', {
        body: {
          ...(s('nhi') ? { nhi: s('nhi') } : {}), ...(s('jti') ? { jti: s('jti') } : {}), ...(s('run') ? { run_id: s('run') } : {}),
          ...(s('credential') ? { credential: s('credential') } : {}), ...(s('severity') ? { severity: s('severity') } : {}),
          ...(s('tier') ? { fallback_tier: s('tier') } : {}), action: need('action'), reason: need('reason'),
        },
      })) as Record<string, unknown>;
      print(r, () => `signal ${String(r.id)} ${String(r.status)}: ${String(r.action)} ${String(r.nhi ?? r.jti)}${r.error ? ` (${String(r.error)})` : ''}`);
      return r.status === 'applied' ? EXIT.ok : EXIT.failed;
    },
    list: async ({ client, s, print }) => {
      const r = (await client.call('GET', '/signals', { query: { nhi: s('nhi'), limit: s('limit') } })) as { signals: Record<string, unknown>[] };
      print(r, () => table(r.signals.map((x) => ({ ...x, received_at: isoTime(x.received_at), applied_at: isoTime(x.applied_at) })), ['id', 'nhi', 'jti', 'action', 'severity', 'reason', 'source', 'status', 'received_at', 'applied_at']));
      return EXIT.ok;
    },
    show: async ({ client, arg0, print }) => {
      const r = (await client.call('GET', `/signals/${encodeURIComponent(arg0())}`)) as Record<string, unknown>;
      print(r, () => details({ ...r, received_at: isoTime(r.received_at), applied_at: isoTime(r.applied_at) }, ['id', 'nhi', 'jti', 'run_id', 'credential', 'action', 'severity', 'reason', 'source', 'txn', 'status', 'error', 'received_at', 'applied_at']));
      return EXIT.ok;
    },
    restore: async ({ client, need, print }) => {
      const r = (await client.call('POST', `/restrictions/${encodeURIComponent(need('nhi'))}/lift`)) as { lifted: Record<string, unknown>[] };
      print(r, () => r.lifted.map((x) => `lifted ${String(x.kind)} of ${String(x.nhi)} (${String(x.id)}, from signal ${String(x.signal_id)})`).join('\n'));
      return EXIT.ok;
    },
  },
});
