import { z } from 'zod';
import { NotFoundError, OAuthError, type Clock } from '../core/index.js';
import type { AdminApi } from '../admin/index.js';
import type { Approvals } from './approvals.js';
import type { Enforcement } from './enforcement.js';
import type { ApprovalRecord, EnforcementStore, KillSwitchRecord } from './ports.js';

/** Wire shape of an approval; a pending request past its expiry is shown as expired. */
export function approvalJson(a: ApprovalRecord, now: number) {
  return {
    id: a.id, nhi: a.nhiId, tool: a.toolId, action: a.action, args_digest: a.argsDigest,
    status: a.status === 'pending' && a.expiresAt <= now ? 'expired' : a.status,
    requested_at: a.requestedAt, expires_at: a.expiresAt, decided_by: a.decidedBy, decided_at: a.decidedAt,
    reason: a.reason, redeemed_at: a.redeemedAt, details: a.details,
  };
}

function killJson(k: KillSwitchRecord) {
  return { id: k.id, scope: k.scope, target: k.target, reason: k.reason, created_by: k.createdBy, created_at: k.createdAt, lifted_at: k.liftedAt, lifted_by: k.liftedBy };
}

/** Revocations, kill switches and approvals in the admin API. */
export function mountEnforcementRoutes(api: AdminApi, d: { enforcement: Enforcement; approvals: Approvals; store: Pick<EnforcementStore, 'listKillSwitches' | 'listApprovals'>; clock: Clock }): void {
  api.route({
    method: 'POST', path: '/revocations', summary: 'Revoke one token (jti), or every token of an NHI or tool issued before now, or all.', tag: 'broker', role: 'admin', status: 201,
    body: z.union([
      z.strictObject({ jti: z.string().min(1).max(200), reason: z.string().max(500).default('revoked by an operator') }),
      z.strictObject({ nhi: z.string().min(1), reason: z.string().max(500).default('revoked by an operator') }),
      z.strictObject({ tool: z.string().min(1), reason: z.string().max(500).default('revoked by an operator') }),
      z.strictObject({ all: z.literal(true), reason: z.string().max(500).default('revoked by an operator') }),
    ]),
    handler: async ({ body, actor }) => {
      if ('jti' in body) {
        await d.enforcement.revokeToken(body.jti, null, body.reason, actor);
        return { revoked: { jti: body.jti } };
      }
      const [kind, target] = 'nhi' in body ? (['nhi', body.nhi] as const) : 'tool' in body ? (['tool', body.tool] as const) : (['global', null] as const);
      const rec = await d.enforcement.revokeAll(kind, target, body.reason, actor);
      return { revoked: { kind, target, not_before: rec.notBefore }, id: rec.id };
    },
  });
  api.route({
    method: 'GET', path: '/kill', summary: 'Kill switches (active by default).', tag: 'broker', role: 'viewer',
    query: z.strictObject({ all: z.enum(['true', 'false']).optional() }),
    handler: async ({ query }) => ({ kill_switches: (await d.store.listKillSwitches({ activeOnly: query.all !== 'true' })).map(killJson) }),
  });
  api.route({
    method: 'POST', path: '/kill', summary: 'Engage a kill switch for an NHI, a tool, or everything: issuance and calls refused at once.', tag: 'broker', role: 'admin', status: 201,
    body: z.strictObject({ scope: z.enum(['nhi', 'tool', 'global']), target: z.string().min(1).optional(), reason: z.string().min(1).max(500) }),
    handler: async ({ body, actor }) => {
      if ((body.scope === 'global') !== (body.target === undefined)) throw new OAuthError('invalid_request', 'target is required for nhi and tool, and not allowed for global');
      return killJson(await d.enforcement.kill(body.scope, body.target ?? null, body.reason, actor));
    },
  });
  api.route({
    method: 'DELETE', path: '/kill/:id', summary: 'Lift a kill switch.', tag: 'broker', role: 'admin',
    handler: async ({ params, actor }) => {
      if (!(await d.enforcement.lift(params.id!, actor))) throw new NotFoundError(`no active kill switch "${params.id}"`);
      return { lifted: params.id };
    },
  });
  api.route({
    method: 'GET', path: '/approvals', summary: 'Approval requests (pending by default).', tag: 'approvals', role: 'viewer',
    query: z.strictObject({ status: z.enum(['pending', 'approved', 'denied', 'expired', 'redeemed']).optional(), nhi: z.string().optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }),
    handler: async ({ query }) => ({ approvals: (await d.store.listApprovals({ status: query.status, nhiId: query.nhi, limit: query.limit })).map((a) => approvalJson(a, d.clock.now())) }),
  });
  api.route({
    method: 'GET', path: '/approvals/:id', summary: 'One approval request.', tag: 'approvals', role: 'viewer',
    handler: async ({ params }) => {
      const a = await d.approvals.get(params.id!);
      if (!a) throw new NotFoundError(`no approval "${params.id}"`);
      return approvalJson(a, d.clock.now());
    },
  });
  for (const verb of ['approve', 'deny'] as const) {
    api.route({
      method: 'POST', path: `/approvals/:id/${verb}`, summary: `${verb === 'approve' ? 'Approve' : 'Deny'} a pending request (not by the requester).`, tag: 'approvals', role: 'approver',
      body: z.strictObject({ reason: z.string().max(500).optional() }),
      handler: async ({ params, body, principal, actor }) => {
        const decided = await d.approvals.decide(params.id!, verb, { principal: principal.name, actor }, body.reason ?? null);
        return approvalJson(decided, d.clock.now());
      },
    });
  }
}
