import { z } from 'zod';
import { ConflictError } from '../core/errors.js';
import type { AdminApi } from '../admin/index.js';
import type { KeyManager } from './key-manager.js';

export interface KeyRouteDeps {
  keys: KeyManager;
  /**
   * Refuses every token `kid` signed, at every instance, within the revocation bound: a
   * revocation of kind `key` (the broker's, so the bus, the reload and the staleness bound
   * carry it as any other revocation).
   */
  revokeKey: (kid: string, reason: string, actor: string) => Promise<void>;
}

/** Key routes of the admin API: the published keys, and retiring one. */
export function mountKeyRoutes(api: AdminApi, d: KeyRouteDeps): void {
  api.route({
    method: 'GET', path: '/keys', summary: 'The published signing keys (public parts).', tag: 'keys', role: 'viewer',
    handler: async () => d.keys.jwks(),
  });
  api.route({
    method: 'POST', path: '/keys/:kid/retire', tag: 'keys', role: 'admin',
    summary: 'Retire a signing key: it stops signing now (a new key takes over). With now: true it also leaves the JWKS now and every token it signed is refused (a compromised key).',
    body: z.strictObject({ now: z.boolean().default(false), reason: z.string().min(1).max(500).optional() }),
    handler: async ({ params, body, actor }) => {
      const kid = params.kid!;
      if (!d.keys.holdsKeys) throw new ConflictError('this instance holds no signing keys (proxy.jwks_uri): retire the key at a broker instance');
      const reason = body.reason ?? 'signing key retired at once by an operator';
      const r = await d.keys.retire(kid, {
        now: body.now, actor, reason, revoke: () => d.revokeKey(kid, reason, actor),
      });
      return { kid: r.kid, now: body.now, retires_at: r.retiresAt, expires_at: r.expiresAt, signing_kid: r.signingKid ?? null };
    },
  });
}
