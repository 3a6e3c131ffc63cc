import { OAuthError, oauth, type ToolConfig } from '../core/index.js';
import { APPROVAL_TTL_MS, describeSignal, type ApprovalRecord } from '../enforcement/index.js';
import type { Subject } from './grants/subject.js';
import { denied } from './refusals.js';
import type { BrokerServices } from './services.js';
import { need, type TokenContext } from './token-context.js';

/**
 * The elevation step: when the profile, or a step-up, says a human must approve, the request
 * carries the digest of the call's arguments and the approval is asked for or redeemed.
 */
export async function elevation(t: TokenContext): Promise<void> {
  const { request, subject, tool, scope, profile, services } = need(t, 'request', 'subject', 'tool', 'scope', 'profile');
  const p = request.params;
  const argsDigest = p.get('args_digest');
  if (argsDigest !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(argsDigest)) throw oauth.invalidRequest('args_digest must be base64url SHA-256 (43 characters)');
  t.argsDigest = argsDigest;
  if (!profile.approval && !t.stepUp) return;
  // A human approves one call: this NHI, this action, these arguments. An approval (and the
  // elevation token redeeming it) without an argument digest would pass any arguments.
  if (argsDigest === undefined) {
    throw oauth.invalidRequest(`${scope.join(' ')} on ${tool.id} needs a human's approval, which is bound to the call's arguments: send args_digest (base64url SHA-256 of the canonical JSON of the arguments, as the proxy computes it)`);
  }
  const why = !profile.approval && t.restriction ? ` (stepped up by ${describeSignal(t.restriction)})` : '';
  t.approval = await approve(services, p.get('approval_id'), subject, tool, scope, argsDigest, t.http.traceId, why);
}

/**
 * Without an approval id, create the request and answer `approval_required` with its id; with
 * one, pending answers `authorization_pending`, denied `access_denied`, expired `expired_token`
 * (RFC 8628 §3.5 vocabulary), approved is redeemed once and yields one short-lived token.
 */
async function approve(
  s: BrokerServices, approvalId: string | undefined, subject: Subject, tool: ToolConfig, scope: string[], argsDigest: string, traceId: string, why: string,
): Promise<ApprovalRecord> {
  const now = s.clock.now();
  if (approvalId === undefined) {
    const a = await s.approvals.request({
      nhiId: subject.nhi.id, toolId: tool.id, action: scope.join(' '), argsDigest, traceId,
      details: { client_id: subject.clientId, run_id: subject.runId, act: subject.act ?? null, via: subject.via },
      auditData: { action: scope.join(' '), args_digest: argsDigest },
    });
    throw new OAuthError('approval_required', `a human must approve ${a.action} on ${tool.id}${why}; retry with approval_id once approved`, 400, {
      approval_id: a.id, approval_uri: s.approvals.uri(a.id), expires_in: Math.floor(APPROVAL_TTL_MS / 1000),
    });
  }
  const a = await s.approvals.get(approvalId);
  if (!a || a.nhiId !== subject.nhi.id || a.toolId !== tool.id || a.action !== scope.join(' ') || (a.argsDigest ?? null) !== argsDigest) {
    throw oauth.invalidGrant('approval_id does not match this NHI, tool, action and arguments');
  }
  if (a.expiresAt <= now) throw new OAuthError('expired_token', 'the approval request expired; ask again');
  if (a.status === 'pending') throw new OAuthError('authorization_pending', 'the approval is still pending');
  if (a.status === 'denied') throw denied('the approval was denied');
  if (a.status !== 'approved' || !(await s.approvals.redeem(a, now, { traceId, auditData: { action: a.action } }))) {
    throw oauth.invalidGrant('the approval was already used');
  }
  return a;
}
