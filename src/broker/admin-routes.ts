import { z } from 'zod';
import type { Clock, MandateConfig } from '../core/index.js';
import type { AdminApi } from '../admin/index.js';
import type { BrokerStore, IssuedTokenRecord } from './ports.js';

function tokenJson(t: IssuedTokenRecord) {
  return {
    jti: t.jti, nhi: t.nhiId, tool: t.audience, scope: t.scope, tier: t.tier, client_id: t.clientId, issued_at: t.issuedAt,
    expires_at: t.expiresAt, bound: t.cnfJkt ? 'dpop' : t.cnfX5t ? 'mtls' : 'none', act: t.act, run_id: t.runId, parent_jti: t.parentJti,
  };
}

/** Issued tokens in the admin API. */
export function mountBrokerRoutes(api: AdminApi, d: { store: Pick<BrokerStore, 'listIssuedTokens'>; clock: Clock; flush: () => Promise<void> }): void {
  api.route({
    method: 'GET', path: '/tokens', summary: 'Issued tokens (metadata only, never the tokens).', tag: 'broker', role: 'viewer',
    query: z.strictObject({ nhi: z.string().optional(), tool: z.string().optional(), active: z.enum(['true', 'false']).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }),
    handler: async ({ query }) => {
      // Issued-token records are written in batches (within 50 ms); an operator reads their own writes.
      await d.flush().catch(() => {});
      return {
        tokens: (await d.store.listIssuedTokens({ nhiId: query.nhi, audience: query.tool, activeAt: query.active === 'true' ? d.clock.now() : undefined, limit: query.limit })).map(tokenJson),
      };
    },
  });
}

/** The token profiles (tiers) and each action's tier, on every role's admin API (the console and `mandate report profiles` read them). */
export function mountTokenProfileRoutes(api: AdminApi, d: { config: Readonly<MandateConfig> }): void {
  api.route({
    method: 'GET', path: '/token-profiles', summary: 'The token profiles (tiers), least to most dangerous, and the TTL ceiling.', tag: 'broker', role: 'viewer',
    handler: async () => ({
      max_ttl: d.config.tokens.max_ttl,
      dpop_nonce: d.config.tokens.dpop_nonce,
      profiles: d.config.tokens.profiles.map((p) => ({ name: p.name, description: p.description ?? null, ttl: p.ttl, binding: p.binding, approval: p.approval })),
      actions: d.config.tools.flatMap((t) => t.actions.map((a) => ({ tool: t.id, action: a.name, tier: a.tier }))),
    }),
  });
}
