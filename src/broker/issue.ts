import { oauth } from '../core/index.js';
import { describeSignal } from '../enforcement/index.js';
import { GRANT, TOKEN_TYPE, newJti, parseScope, type AccessTokenClaims } from '../jose/index.js';
import { denied } from './refusals.js';
import { need, type TokenContext } from './token-context.js';

// The token endpoint's issuing steps (token-endpoint.ts lists them in order): from the subject
// the grant found to a signed, recorded access token.

/** RFC 8707 §2 / RFC 8693 §2.1: exactly one tool; a Mandate token is narrowed only for its own tool. */
export function chooseTarget(t: TokenContext): void {
  const { request, subject, services: { catalog } } = need(t, 'request', 'subject');
  const tool = catalog.resolveTarget(request.resource, request.audience);
  if (subject.audienceCeiling && subject.audienceCeiling !== catalog.resourceOf(tool.id)) {
    throw oauth.invalidTarget('a Mandate token can only be narrowed for the tool it was issued for');
  }
  t.tool = tool;
}

/** The scope: the actions requested that the NHI holds an unexpired grant for on the tool, within the presented token's scope. */
export async function chooseScope(t: TokenContext): Promise<void> {
  const { request, subject, tool, services: s } = need(t, 'request', 'subject', 'tool');
  const requested = parseScope(request.params.get('scope'));
  if (requested.length === 0) throw oauth.invalidScope('scope is required: name the actions this task needs');
  const grants = (await s.inventory.get(subject.nhi.id)).grants.filter((g) => g.toolId === tool.id);
  const now = s.clock.now();
  const granted = new Set(grants.filter((g) => g.expiresAt === null || g.expiresAt > now).flatMap((g) => (g.actions.includes('*') ? tool.actions.map((a) => a.name) : g.actions)));
  let scope = requested.filter((a) => granted.has(a) && tool.actions.some((x) => x.name === a));
  if (subject.scopeCeiling) scope = scope.filter((a) => subject.scopeCeiling!.includes(a));
  if (scope.length === 0) throw oauth.invalidScope(`${subject.nhi.id} holds no grant for ${requested.join(' ').slice(0, 200)} on ${tool.id}`);
  t.now = now;
  t.requested = requested;
  t.scope = scope;
}

/**
 * Continuous access evaluation: a step-down keeps only the actions at or below the fallback
 * tier (the granted scope is narrowed, RFC 6749 §3.3 lets the server issue less than asked and
 * say so in `scope`); a step-up makes the actions above it need a human (elevation).
 */
export function applyRestrictions(t: TokenContext): void {
  const { subject, tool, scope, services: s } = need(t, 'subject', 'tool', 'scope');
  const restriction = s.restrictions?.restrictionOf(subject.nhi.id);
  t.restriction = restriction;
  t.stepUp = false;
  if (!restriction) return;
  const allowed = new Set(s.catalog.actionsAtOrBelow(tool, restriction.fallbackTier));
  if (restriction.kind === 'step_down') {
    t.scope = scope.filter((a) => allowed.has(a));
    if (t.scope.length === 0) {
      throw oauth.invalidScope(`${subject.nhi.id} was stepped down by ${describeSignal(restriction)}: only actions at or below the ${restriction.fallbackTier} tier until an operator restores it`);
    }
  } else t.stepUp = scope.some((a) => !allowed.has(a));
}

/** The profile of the most dangerous action in the scope: TTL, whether binding is required, whether a human must approve. */
export function chooseProfile(t: TokenContext): void {
  const { tool, scope, services: s } = need(t, 'tool', 'scope');
  t.profile = s.catalog.profileFor(tool, scope);
}

export function checkKillSwitch(t: TokenContext): void {
  const { subject, tool, services: s } = need(t, 'subject', 'tool');
  const killed = s.enforcement.revocations.killed(subject.nhi.id, tool.id);
  if (killed) throw denied(`issuance refused: kill switch (${killed})`);
}

export function requireBinding(t: TokenContext): void {
  const { profile, binding } = need(t, 'profile', 'binding');
  if (profile.binding === 'required' && !binding.jkt && !binding.x5t) {
    throw oauth.invalidRequest(`the ${profile.name} profile requires a sender-constrained token: send a DPoP proof (RFC 9449) or use mTLS (RFC 8705)`);
  }
}

/** An RFC 9068 access token: `aud` the tool's resource, `cnf` the binding, `act`, the tier, the run and the approval. */
export async function mint(t: TokenContext): Promise<void> {
  const { request, subject: s, tool, scope, profile, binding, now, services } = need(t, 'request', 'subject', 'tool', 'scope', 'profile', 'binding', 'now');
  const p = request.params;
  const { approval, argsDigest } = t;
  const ttlMs = profile.ttl * 1000;
  const exp = Math.floor(Math.min(now + ttlMs, s.notAfter ?? Infinity) / 1000);
  const iat = Math.floor(now / 1000);
  if (exp <= iat) throw oauth.invalidGrant('the presented token expires too soon to issue from');
  const claims: AccessTokenClaims = {
    iss: services.issuer(), sub: s.nhi.id, aud: services.catalog.resourceOf(tool.id), exp, iat, jti: newJti(s.parentJti),
    client_id: s.clientId, scope: scope.join(' '), mandate_tier: profile.name,
    ...(binding.jkt ? { cnf: { jkt: binding.jkt } } : binding.x5t ? { cnf: { 'x5t#S256': binding.x5t } } : {}),
    ...(s.act ? { act: s.act } : {}),
    ...(s.runId ? { mandate_run_id: s.runId } : p.get('run_id') ? { mandate_run_id: p.get('run_id')!.slice(0, 200) } : {}),
    ...(approval ? { mandate_approval: approval.id, mandate_args_digest: argsDigest! } : {}),
  };
  t.claims = claims;
  t.token = await services.signer.sign(claims);
}

/** Records the issued token (lineage, revocation by jti), audits and publishes `token.issued`, and answers RFC 6749 §5.1. */
export function record(t: TokenContext): void {
  const { request, subject: s, tool, scope, requested, profile, binding, now, claims, token, services: d } = need(
    t, 'request', 'subject', 'tool', 'scope', 'requested', 'profile', 'binding', 'now', 'claims', 'token',
  );
  const { jti, iat, exp } = claims;
  const approval = t.approval;
  d.issued.record({
    jti, nhiId: s.nhi.id, audience: tool.id, scope, tier: profile.name, clientId: s.clientId, issuedAt: iat * 1000,
    expiresAt: exp * 1000, cnfJkt: binding.jkt ?? null, cnfX5t: binding.jkt ? null : binding.x5t ?? null, act: s.act ?? null, runId: claims.mandate_run_id ?? null,
    parentJti: s.parentJti ?? null,
  });
  const event = {
    jti, nhi: s.nhi.id, tool: tool.id, scope, requested_scope: requested, tier: profile.name, via: s.via, client_id: s.clientId,
    expires_at: exp * 1000, bound: binding.jkt ? 'dpop' : binding.x5t ? 'mtls' : 'none', act: s.act ?? null, approval: approval?.id ?? null,
    parent_jti: s.parentJti ?? null,
  };
  d.audit.record({ type: 'token.issued', actor: s.nhi.id, subject: s.nhi.id, tool: tool.id, decision: 'allow', traceId: t.http.traceId, data: event });
  void d.bus.publish('token.issued', { ...event, at: now }).catch((err: unknown) => d.logger.warn({ err }, 'token.issued not published'));
  t.response = {
    access_token: token,
    token_type: binding.jkt ? 'DPoP' : 'Bearer',
    expires_in: exp - iat,
    scope: claims.scope,
    ...(request.params.get('grant_type') === GRANT.tokenExchange ? { issued_token_type: TOKEN_TYPE.accessToken } : {}),
  };
}
