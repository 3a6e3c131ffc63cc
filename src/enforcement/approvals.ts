import { ConflictError, NotFoundError, OAuthError, newId, type AuditSink, type Bus, type Clock } from '../core/index.js';
import type { ApprovalRecord, EnforcementStore } from './ports.js';

/** How long a human has to decide a request, and an approval stays redeemable. */
export const APPROVAL_TTL_MS = 15 * 60 * 1000;

export type ApprovalStore = Pick<EnforcementStore, 'createApproval' | 'getApproval' | 'findApprovals' | 'redeemApproval' | 'decideApproval'>;

/** One call a human is asked to approve: who, which tool and action, which arguments. */
export interface ApprovalAsk {
  nhiId: string;
  toolId: string;
  action: string;
  /** base64url SHA-256 of the call's canonical arguments: an approval passes exactly these. */
  argsDigest: string;
  /** Non-secret context for the approver. */
  details: Record<string, unknown>;
  traceId?: string | undefined;
  /** The audit record's data (the action and digest, and where it was asked). */
  auditData: Record<string, unknown>;
}

/**
 * Human approval of one call, requested by the broker (an elevation token) or the proxy (a held
 * call), decided by an approver, redeemed once. One request/decide/redeem for both, so that the
 * same record means the same thing wherever it is asked for.
 */
export class Approvals {
  constructor(private readonly d: { store: ApprovalStore; audit: AuditSink; bus: Bus; clock: Clock; issuer: () => string }) {}

  /** Records a pending request, audits it and announces it (`approval.requested`). */
  async request(ask: ApprovalAsk): Promise<ApprovalRecord> {
    const now = this.d.clock.now();
    const a: ApprovalRecord = {
      id: newId('apr'), nhiId: ask.nhiId, toolId: ask.toolId, action: ask.action, argsDigest: ask.argsDigest, status: 'pending',
      requestedAt: now, expiresAt: now + APPROVAL_TTL_MS, decidedBy: null, decidedAt: null, reason: null, redeemedAt: null,
      details: ask.details,
    };
    await this.d.store.createApproval(a);
    this.d.audit.record({ type: 'approval.requested', actor: ask.nhiId, subject: a.id, tool: ask.toolId, traceId: ask.traceId, data: ask.auditData });
    void this.d.bus.publish('approval.requested', { id: a.id, nhi: ask.nhiId, tool: ask.toolId, action: a.action, at: now }).catch(() => {});
    return a;
  }

  /** The live requests of exactly one call (see EnforcementStore.findApprovals). */
  forCall(key: { nhiId: string; toolId: string; action: string; argsDigest: string }, at: number): Promise<ApprovalRecord[]> {
    return this.d.store.findApprovals(key, at);
  }

  get(id: string): Promise<ApprovalRecord | undefined> {
    return this.d.store.getApproval(id);
  }

  /** Redeems an approved, unexpired request exactly once across instances; audits it. False when another redeemed it first. */
  async redeem(a: ApprovalRecord, at: number, by: { traceId?: string | undefined; auditData: Record<string, unknown> }): Promise<boolean> {
    if (!(await this.d.store.redeemApproval(a.id, at))) return false;
    this.d.audit.record({ type: 'approval.redeemed', actor: a.nhiId, subject: a.id, tool: a.toolId, traceId: by.traceId, data: by.auditData });
    return true;
  }

  /** An approver's decision on a pending request; never the requester's own (four eyes). */
  async decide(id: string, verb: 'approve' | 'deny', who: { principal: string; actor: string }, reason: string | null): Promise<ApprovalRecord> {
    const a = await this.d.store.getApproval(id);
    if (!a) throw new NotFoundError(`no approval "${id}"`);
    if (who.principal === a.nhiId) throw new OAuthError('access_denied', 'the requester cannot decide its own approval', 403);
    const now = this.d.clock.now();
    const decided = await this.d.store.decideApproval(a.id, { status: verb === 'approve' ? 'approved' : 'denied', decidedBy: who.actor, decidedAt: now, reason });
    if (!decided) throw new ConflictError(`approval ${a.id} is ${a.expiresAt <= now ? 'expired' : a.status}, not pending`);
    const allow = verb === 'approve';
    this.d.audit.record({ type: allow ? 'approval.approved' : 'approval.denied', actor: who.actor, subject: a.id, tool: a.toolId, decision: allow ? 'allow' : 'deny', data: { nhi: a.nhiId, action: a.action, reason } });
    void this.d.bus.publish(`approval.${allow ? 'approved' : 'denied'}`, { id: a.id, nhi: a.nhiId, tool: a.toolId, action: a.action, by: who.actor, at: this.d.clock.now() }).catch(() => {});
    return decided;
  }

  /** Where an approver decides it (the admin API). */
  uri(id: string): string {
    return `${this.d.issuer()}/admin/v1/approvals/${id}`;
  }
}
