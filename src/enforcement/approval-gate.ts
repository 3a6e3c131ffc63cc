import { OAuthError, type Clock, type ReplayStore, type ToolConfig } from '../core/index.js';
import type { AccessTokenClaims } from '../jose/index.js';
import type { Approvals } from './approvals.js';
import type { ApprovalRecord } from './ports.js';

/**
 * The approval gate for calls that a human must approve: the action's tier says so
 * (`approval: true` in its token profile) or a Cedar policy annotated `@approval("required")`
 * holds it. A call passes once, with either
 * - an elevation token from the broker (`mandate_approval`), whose argument digest, when it
 *   has one, is this call's; each elevation token passes once (its `jti`, atomically, across
 *   instances), or
 * - an approval a human granted at the proxy's request for the same NHI, tool, action and
 *   argument digest, redeemed atomically (single use).
 * Otherwise the call is held: an approval request is created (or the pending one reused) and
 * the caller gets `approval_required` with its id and where to approve.
 */
export class ApprovalRequiredError extends OAuthError {
  constructor(
    readonly approval: ApprovalRecord,
    approvalUri: string,
    now: number,
    signal?: { id: string; note: string },
  ) {
    super('approval_required', `a human must approve ${approval.action} on ${approval.toolId}${signal ? ` (${signal.note})` : ''}; retry the same call once approved`, 403, {
      approval_id: approval.id,
      approval_uri: approvalUri,
      expires_in: Math.max(0, Math.floor((approval.expiresAt - now) / 1000)),
      ...(signal ? { signal_id: signal.id } : {}),
    });
  }
}

export interface GateRequest {
  claims: AccessTokenClaims;
  tool: ToolConfig;
  action: string;
  argsDigest: string;
  traceId: string;
  /** Why the call is held: the tier or a policy. */
  because: 'tier' | 'policy';
  /** The signal that holds it, when a step-up does: named in the answer. */
  signal?: { id: string; note: string };
}

export class ApprovalGate {
  constructor(
    private readonly d: {
      approvals: Approvals;
      /** Elevation tokens' one-time use. */
      replay: ReplayStore;
      clock: Clock;
      skewS: number;
    },
  ) {}

  /** Resolves with how the call was approved; throws ApprovalRequiredError or an OAuthError (403). */
  async pass(g: GateRequest): Promise<{ via: 'elevation_token' | 'approval'; approvalId: string }> {
    const { claims } = g;
    const now = this.d.clock.now();
    if (claims.mandate_approval !== undefined) {
      // An elevation token passes exactly the call a human approved: this NHI (its `sub`), an
      // action in its scope (checked before the gate) and these arguments. One that names no
      // arguments was approved for none in particular, so it passes no held call.
      if (claims.mandate_args_digest === undefined) {
        throw new OAuthError('access_denied', 'the elevation token names no arguments: it cannot pass a call held for approval (ask for one with args_digest)', 403);
      }
      if (claims.mandate_args_digest !== g.argsDigest) {
        throw new OAuthError('access_denied', 'the elevation token is bound to other arguments', 403);
      }
      const first = await this.d.replay.insertOnce('elevation', claims.jti, claims.exp * 1000 + this.d.skewS * 1000);
      if (!first) throw new OAuthError('access_denied', 'the elevation token was already used: it passes one call', 403);
      return { via: 'elevation_token', approvalId: claims.mandate_approval };
    }

    // This call's requests, by its key: however many requests for other calls exist, a denial
    // or a pending request for this one stays in view.
    const mine = await this.d.approvals.forCall({ nhiId: claims.sub, toolId: g.tool.id, action: g.action, argsDigest: g.argsDigest }, now);
    for (const a of mine) {
      if (a.status === 'approved' && (await this.d.approvals.redeem(a, now, { traceId: g.traceId, auditData: { action: g.action, args_digest: g.argsDigest, at: 'proxy' } }))) {
        return { via: 'approval', approvalId: a.id };
      }
    }
    const pending = mine.find((a) => a.status === 'pending');
    if (pending) throw new ApprovalRequiredError(pending, this.d.approvals.uri(pending.id), now, g.signal);
    const denied = mine.find((a) => a.status === 'denied');
    if (denied) {
      // A denial stands for this exact call until it would have expired; asking again needs other arguments or time.
      throw new OAuthError('access_denied', `a human denied ${g.action} with these arguments (${denied.id})`, 403, { approval_id: denied.id });
    }
    const a = await this.d.approvals.request({
      nhiId: claims.sub, toolId: g.tool.id, action: g.action, argsDigest: g.argsDigest, traceId: g.traceId,
      details: { client_id: claims.client_id, run_id: claims.mandate_run_id ?? null, act: claims.act ?? null, via: 'proxy', because: g.because },
      auditData: { action: g.action, args_digest: g.argsDigest, because: g.because, at: 'proxy' },
    });
    throw new ApprovalRequiredError(a, this.d.approvals.uri(a.id), now, g.signal);
  }
}
