import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';

/** `mandate ssf`: the Shared Signals events Mandate could not deliver. */
export const ssf = adminNoun({
  name: 'ssf',
  summary: 'Shared Signals delivery: dead letters, retry (over the admin API)',
  usage: '  mandate ssf dead-letters [--stream ID]  |  mandate ssf retry EVENT_ID',
  verbs: {
    'dead-letters': async ({ client, s, print }) => {
      const r = (await client.call('GET', '/ssf/events', { query: { status: 'dead', stream_id: s('stream'), limit: s('limit') } })) as { events: Record<string, unknown>[] };
      print(r, () => table(r.events.map((e) => ({ ...e, created_at: isoTime(e.created_at) })), ['id', 'stream_id', 'jti', 'attempts', 'last_error', 'created_at']));
      return EXIT.ok;
    },
    retry: async ({ client, arg0, positionals, print }) => {
      const r = await client.call('POST', `/ssf/events/${encodeURIComponent(arg0())}/retry`);
      print(r, () => `queued ${positionals[0]} again`);
      return EXIT.ok;
    },
  },
});
