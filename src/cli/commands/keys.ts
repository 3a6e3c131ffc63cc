import { adminNoun } from '../admin-noun.js';
import { EXIT } from '../errors.js';
import { isoTime, table } from '../format.js';

/** `mandate keys`: the broker's signing keys. */
export const keys = adminNoun({
  name: 'keys',
  summary: "the broker's signing keys: list, retire (over the admin API)",
  usage: `  mandate keys list
  mandate keys retire KID [--now] [--reason R]  stop signing with a key now; --now: also out of the JWKS
                                               now, every token it signed refused (a compromised key)`,
  verbs: {
    list: async ({ client, print }) => {
      const r = (await client.call('GET', '/keys')) as { keys: Record<string, unknown>[] };
      print(r, () => table(r.keys, ['kid', 'alg', 'kty', 'crv', 'use']));
      return EXIT.ok;
    },
    retire: async ({ client, values, s, arg0, print }) => {
      const kid = arg0();
      const r = (await client.call('POST', `/keys/${encodeURIComponent(kid)}/retire`, { body: { now: values.now === true, ...(s('reason') ? { reason: s('reason') } : {}) } })) as Record<string, unknown>;
      print(r, () => (values.now === true
        ? `retired ${kid} now: out of the JWKS, every token it signed is refused; signing with ${String(r.signing_kid)}`
        : `retired ${kid}: no longer signs (signing with ${String(r.signing_kid)}), published until ${isoTime(r.expires_at)}`));
      return EXIT.ok;
    },
  },
});
