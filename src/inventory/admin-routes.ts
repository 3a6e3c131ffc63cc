import { z } from 'zod';
import { endInput, endOfDay, parseEnd } from '../core/index.js';
import type { AdminApi } from '../admin/index.js';
import { publicCredential, type Inventory } from './inventory.js';
import type { NhiRecord, GrantRecord, ToolRecord } from './ports.js';

const nhiId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/);
const isoDate = z.iso.date();

/** Wire shape of an NHI: snake_case as the rest of the API. */
export function nhiJson(n: NhiRecord) {
  return {
    id: n.id, class: n.class, owner: n.owner, system: n.system, environment: n.environment, tier: n.tier, status: n.status,
    description: n.description, may_act: n.mayAct, source: n.source, created_at: n.createdAt, updated_at: n.updatedAt,
  };
}

export function grantJson(g: GrantRecord) {
  return {
    id: g.id, nhi: g.nhiId, tool: g.toolId, actions: g.actions, change_ref: g.changeRef, source: g.source,
    expires_at: g.expiresAt, created_at: g.createdAt, updated_at: g.updatedAt, last_used_at: g.lastUsedAt,
  };
}

export function toolJson(t: ToolRecord) {
  return { id: t.id, kind: t.kind, upstream: t.upstream, description: t.description, source: t.source, config: t.config, created_at: t.createdAt, updated_at: t.updatedAt };
}

/** The inventory's admin API: NHIs, credentials, tools, grants. */
export function mountInventoryRoutes(api: AdminApi, inv: Inventory): void {
  api.route({
    method: 'GET', path: '/nhis', summary: 'List NHIs, filtered.', tag: 'inventory', role: 'viewer',
    query: z.strictObject({
      class: z.enum(['agent', 'workload', 'runner', 'tool']).optional(),
      owner: z.string().optional(),
      environment: z.string().optional(),
      tier: z.enum(['read', 'write', 'admin']).optional(),
      status: z.enum(['active', 'disabled']).optional(),
      credential_type: z.enum(['federated', 'private_key_jwt', 'static_secret']).optional(),
      search: z.string().max(200).optional(),
    }),
    handler: async ({ query }) => {
      const { credential_type, ...rest } = query;
      return { nhis: (await inv.listNhis({ ...rest, credentialType: credential_type })).map(nhiJson) };
    },
  });
  api.route({
    method: 'POST', path: '/nhis', summary: 'Add an NHI (outside GitOps; audited).', tag: 'inventory', role: 'admin', status: 201,
    body: z.strictObject({
      id: nhiId,
      class: z.enum(['agent', 'workload', 'runner', 'tool']),
      owner: z.string().min(1),
      system: z.string().min(1),
      environment: z.string().min(1).default('production'),
      tier: z.enum(['read', 'write', 'admin']),
      description: z.string().max(1000).optional(),
      may_act: z.array(nhiId).default([]),
    }),
    handler: async ({ body, actor }) =>
      nhiJson(await inv.addNhi({ ...body, mayAct: body.may_act, description: body.description ?? null }, actor)),
  });
  api.route({
    method: 'GET', path: '/nhis/:id', summary: 'One NHI with its credentials and grants.', tag: 'inventory', role: 'viewer',
    handler: async ({ params }) => {
      const d = await inv.getNhi(params.id!);
      return { ...nhiJson(d.nhi), credentials: d.credentials.map(publicCredential), grants: d.grants.map(grantJson) };
    },
  });
  api.route({
    method: 'PATCH', path: '/nhis/:id', summary: 'Change an NHI’s owner, system, environment, tier or description.', tag: 'inventory', role: 'admin',
    body: z.strictObject({
      owner: z.string().min(1).optional(),
      system: z.string().min(1).optional(),
      environment: z.string().min(1).optional(),
      tier: z.enum(['read', 'write', 'admin']).optional(),
      description: z.string().max(1000).optional(),
    }),
    handler: async ({ params, body, actor }) => nhiJson(await inv.updateNhi(params.id!, body, actor)),
  });
  for (const [verb, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
    api.route({
      method: 'POST', path: `/nhis/:id/${verb}`, summary: `${verb === 'disable' ? 'Disable' : 'Re-enable'} an NHI.`, tag: 'inventory', role: 'admin',
      body: z.strictObject({ reason: z.string().min(1).max(500).default(`${verb}d by an operator`) }),
      handler: async ({ params, body, actor }) => nhiJson(await inv.setStatus(params.id!, status, actor, body.reason)),
    });
  }
  api.route({
    method: 'POST', path: '/nhis/:id/credentials', summary: 'Record a credential for an NHI (a static secret only as an exception).', tag: 'inventory', role: 'admin', status: 201,
    body: z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('federated'), trust: z.string().min(1), subject: z.string().min(1), expires: endInput.optional() }),
      z.strictObject({ type: z.literal('private_key_jwt'), jwks: z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }), expires: endInput.optional() }),
      z.strictObject({
        type: z.literal('static_secret'),
        secret_ref: z.string().regex(/^(env|file):.+$/, 'a reference, env:NAME or file:PATH; never the secret'),
        exception_ticket: z.string().min(1),
        exception_expires: isoDate,
      }),
    ]),
    handler: async ({ params, body, actor }) => {
      const base = { nhiId: params.id!, trust: null, subject: null, exceptionTicket: null, exceptionExpiresAt: null, expiresAt: null, lastRotatedAt: null };
      const rec = await inv.addCredential(
        body.type === 'federated'
          ? { ...base, type: 'federated', trust: body.trust, subject: body.subject, data: {}, expiresAt: body.expires ? parseEnd(body.expires) : null }
          : body.type === 'private_key_jwt'
            ? { ...base, type: 'private_key_jwt', data: { jwks: body.jwks }, expiresAt: body.expires ? parseEnd(body.expires) : null }
            : {
                ...base, type: 'static_secret', data: { secret_ref: body.secret_ref },
                exceptionTicket: body.exception_ticket, exceptionExpiresAt: endOfDay(body.exception_expires),
              },
        actor,
      );
      return publicCredential(rec);
    },
  });
  api.route({
    method: 'DELETE', path: '/credentials/:id', summary: 'Remove a credential record.', tag: 'inventory', role: 'admin',
    handler: async ({ params, actor }) => (await inv.removeCredential(params.id!, actor), { removed: params.id }),
  });
  api.route({
    method: 'GET', path: '/tools', summary: 'List tools.', tag: 'inventory', role: 'viewer',
    handler: async () => ({ tools: (await inv.listTools()).map(toolJson) }),
  });
  api.route({
    method: 'GET', path: '/tools/:id', summary: 'One tool and its declared actions.', tag: 'inventory', role: 'viewer',
    handler: async ({ params }) => toolJson(await inv.getTool(params.id!)),
  });
  api.route({
    method: 'GET', path: '/grants', summary: 'List grants (NHI → tool → actions).', tag: 'inventory', role: 'viewer',
    query: z.strictObject({ nhi: z.string().optional(), tool: z.string().optional() }),
    handler: async ({ query }) => ({ grants: (await inv.listGrants({ nhiId: query.nhi, toolId: query.tool })).map(grantJson) }),
  });
  api.route({
    method: 'POST', path: '/grants', summary: 'Add or widen a grant (outside GitOps; audited).', tag: 'inventory', role: 'admin', status: 201,
    body: z.strictObject({
      nhi: nhiId,
      tool: nhiId,
      actions: z.array(z.string().min(1).max(128)).min(1).max(500),
      change_ref: z.string().max(200).optional(),
      expires: isoDate.optional(),
    }),
    handler: async ({ body, actor }) =>
      grantJson(await inv.addGrant({
        nhiId: body.nhi, toolId: body.tool, actions: body.actions, changeRef: body.change_ref ?? null,
        expiresAt: body.expires ? endOfDay(body.expires) : null,
      }, actor)),
  });
  api.route({
    method: 'DELETE', path: '/grants/:id', summary: 'Remove a grant.', tag: 'inventory', role: 'admin',
    handler: async ({ params, actor }) => (await inv.removeGrant(params.id!, actor), { removed: params.id }),
  });
}
