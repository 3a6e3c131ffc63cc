import { OAuthError, argsDigest, type ActionConfig, type Clock, type ReplayStore } from '../core/index.js';
import { ApprovalGate, describeSignal, type Approvals, type RestrictionLookup } from '../enforcement/index.js';
import type { PolicyDecision, PolicyEngine, PolicyRequest } from '../policy/index.js';
import type { Call } from './call.js';
import type { Checks } from './checks.js';

export interface DecideDeps {
  policy: PolicyEngine;
  approvals: Approvals;
  replay: ReplayStore;
  clock: Clock;
  clockSkewS: number;
  restrictions?: RestrictionLookup | undefined;
  risk?: { scoreOf(nhiId: string): number } | undefined;
}

/** Cedar's deny as the caller reads it: 403, naming the policies that denied (none: the default deny). */
export function deniedBy(decision: PolicyDecision, what = '', none = '(default deny)'): OAuthError {
  return new OAuthError('access_denied', `${what}denied by policy ${decision.policies.join(', ') || none}`, 403);
}

/** Cedar on a call's action, then the approval gate when its tier, a step-up or a policy holds it. */
export class Decisions {
  private readonly gate: ApprovalGate;

  constructor(private readonly d: DecideDeps, private readonly checks: Checks) {
    this.gate = new ApprovalGate({ approvals: d.approvals, replay: d.replay, clock: d.clock, skewS: d.clockSkewS });
  }

  /**
   * Decides on the call's declared action (or, without one, its `mcp:` action) with its args and
   * digest. Returns the final decision (allow or deny), the policies that decided in
   * `call.policies`; throws ApprovalRequiredError while a human has not approved.
   */
  async decide(call: Call, endpoint?: { method: string; path: string }): Promise<PolicyDecision> {
    const action = call.declared;
    const req = this.policyRequest(call, action, call.args, call.argsDigest, endpoint);
    let decision = this.d.policy.evaluate(req);
    call.policies = decision.policies;
    const tierHold = action !== undefined && this.checks.holdsForTier(call, action);
    if (action && (tierHold || decision.decision === 'approval_required')) {
      if (decision.decision === 'deny') return decision;
      const token = call.token!;
      // Held because a signal stepped the NHI up (not its tier): the answer names the signal.
      const r = tierHold && !call.rt.approvalTiers.has(action.tier) ? this.d.restrictions?.restrictionOf(token.claims.sub) : undefined;
      const passed = await this.gate.pass({
        claims: token.claims, tool: call.rt.tool, action: action.name, argsDigest: call.argsDigest ?? argsDigest(null), traceId: call.trace.traceId,
        because: tierHold ? 'tier' : 'policy',
        ...(r ? { signal: { id: r.signalId, note: `stepped up by ${describeSignal(r)}` } } : {}),
      });
      call.approval = passed.approvalId;
      decision = this.d.policy.evaluate({ ...req, approved: true });
      call.policies = decision.policies;
      if (decision.decision === 'approval_required') decision = { ...decision, decision: 'deny' };
    }
    return decision;
  }

  /** Whether tools/list shows a tool to this caller: declared, in scope, and not denied by policy. */
  mayCall(call: Call, name: string): boolean {
    const action = call.rt.matcher.byName(name);
    if (!action || !call.token!.claims.scope.split(' ').includes(action.name)) return false;
    if (this.checks.steppedDownFrom(call.token!, action)) return false;
    const d = this.d.policy.evaluate(this.policyRequest(call, action, null, null, undefined));
    // A call a human must approve is still listed: calling it asks for the approval.
    return d.decision !== 'deny';
  }

  private policyRequest(
    call: Call, action: ActionConfig | undefined, args: Record<string, unknown> | null, digest: string | null, endpoint: { method: string; path: string } | undefined,
  ): PolicyRequest {
    const nhi = call.nhi!;
    const claims = call.token!.claims;
    return {
      nhi: { id: nhi.id, class: nhi.class, owner: nhi.owner, system: nhi.system, environment: nhi.environment, tier: nhi.tier },
      tool: { id: call.rt.tool.id, kind: call.rt.tool.kind },
      action: action?.name ?? call.action ?? 'mcp:unknown',
      tier: action?.tier ?? null,
      args,
      argsDigest: digest,
      ...(endpoint ? { endpoint } : {}),
      // The decision cache keys on the score (policy/engine.ts cacheKey), so a changed score is decided anew.
      riskScore: this.d.risk?.scoreOf(nhi.id) ?? 0,
      approved: false,
      onBehalfOf: typeof claims.act?.sub === 'string' ? claims.act.sub : null,
      runId: claims.mandate_run_id ?? null,
      now: this.d.clock.now(),
    };
  }
}
