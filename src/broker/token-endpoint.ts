import { OAuthError, challenge, sendJson, type RequestContext } from '../core/index.js';
import { peerCertThumbprint } from '../jose/index.js';
import { authenticateClient } from './client-auth.js';
import { elevation } from './elevation.js';
import { grantFor } from './grants/table.js';
import { applyRestrictions, checkKillSwitch, chooseProfile, chooseScope, chooseTarget, mint, record, requireBinding } from './issue.js';
import { unacceptable } from './refusals.js';
import { parseTokenRequest, sendOAuthError } from './request.js';
import { tokenEndpointOf, type BrokerServices } from './services.js';
import { need, type Step, type TokenContext } from './token-context.js';

/**
 * The token endpoint (RFC 6749 §3.2), as node-oidc-provider's: a list of named steps over one
 * TokenContext, run in order. The first five check the request and find the subject; the rest
 * (issue.ts, elevation.ts) decide and issue the token. Every refusal is an OAuth error with its
 * RFC code, recorded as `token.denied`.
 */
const STEPS: readonly Step[] = [
  parseRequest, //       the form (RFC 6749 §3.2)
  checkSenderProof, //   DPoP proof (RFC 9449) and TLS client certificate (RFC 8705)
  authenticate, //       the client (client-auth.ts)
  runGrant, //           who the subject is and its ceilings (grants/)
  chooseBinding, //      the key the new token is bound to
  chooseTarget, //       exactly one tool (RFC 8707)
  chooseScope, //        requested ∩ granted (∩ the presented token's scope)
  applyRestrictions, //  step-down narrows the scope, step-up needs a human
  chooseProfile, //      the most dangerous action's profile: TTL, binding, approval
  checkKillSwitch, //    an engaged kill switch refuses
  requireBinding, //     the profile may require a sender-constrained token
  elevation, //          a human's approval, when the profile or a step-up needs one
  mint, //               sign an RFC 9068 access token
  record, //             record it, audit and publish `token.issued`
];

export async function handleToken(services: BrokerServices, http: RequestContext, maxBodyBytes: number): Promise<void> {
  const t: TokenContext = { services, http, maxBodyBytes };
  try {
    for (const step of STEPS) {
      // Most steps are synchronous: only a step's promise is awaited (each await is a turn of the microtask queue).
      const pending = step(t);
      if (pending) await pending;
    }
    sendJson(http.res, 200, need(t, 'response').response);
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    deny(t, err);
    const { dpop } = services;
    if (err.error === 'use_dpop_nonce') http.res.setHeader('dpop-nonce', dpop.currentNonce());
    if (err.error === 'invalid_dpop_proof' || err.error === 'use_dpop_nonce') {
      http.res.setHeader('www-authenticate', challenge('DPoP', { error: err.error, algs: dpop.supportedAlgorithms.join(' ') }));
    }
    sendOAuthError(http, err);
  }
}

/** A refusal: audited and published as `token.denied`, naming the NHI once the grant found it. */
function deny(t: TokenContext, err: OAuthError): void {
  const { audit, bus, clock } = t.services;
  const nhi = t.subject?.nhi.id ?? null;
  const data = { error: err.error, reason: err.message, grant_type: t.request?.params.get('grant_type') ?? '' };
  audit.record({ type: 'token.denied', actor: nhi, subject: nhi, decision: 'deny', traceId: t.http.traceId, data });
  void bus.publish('token.denied', { ...data, nhi, at: clock.now() }).catch(() => {});
}

async function parseRequest(t: TokenContext): Promise<void> {
  t.request = await parseTokenRequest(t.http.req, t.maxBodyBytes);
}

/** Binding first: a bad proof fails before anything else is looked at (RFC 9449 §5). */
async function checkSenderProof(t: TokenContext): Promise<void> {
  const { req } = t.http;
  const jkt = req.headers.dpop !== undefined
    ? (await t.services.dpop.verify(req.headers.dpop, { method: 'POST', url: tokenEndpointOf(t.services) })).jkt
    : undefined;
  t.proven = { jkt, x5t: peerCertThumbprint(req) };
}

async function authenticate(t: TokenContext): Promise<void> {
  t.clientId = await authenticateClient(t.services, t.http.req, need(t, 'request').request.params, 'token');
}

async function runGrant(t: TokenContext): Promise<void> {
  const { request } = need(t, 'request');
  t.subject = await grantFor(request.params.get('grant_type'))(t.services, request, t.clientId);
}

/**
 * The key the new token is bound to. When the presented token that stands for the caller (the
 * subject token, or with delegation the actor token) is bound, the request must prove that key
 * (RFC 9449 §4.3 with the DPoP proof, RFC 8705 §3 with the TLS client certificate) and the new
 * token is bound to the same key; otherwise to whatever key the request proves, DPoP first.
 */
function chooseBinding(t: TokenContext): void {
  const { subject, proven } = need(t, 'subject', 'proven');
  const p = subject.proof;
  if (!p) {
    t.binding = proven;
    return;
  }
  const caller = p.of === 'actor_token' ? ' (with an actor_token, the caller is the actor)' : '';
  if (p.jkt !== undefined) {
    if (proven.jkt !== p.jkt) throw unacceptable(p.of, `it is DPoP-bound: the request's DPoP proof must be made with its key${caller} (RFC 9449 §4.3)`);
    t.binding = { jkt: p.jkt };
    return;
  }
  if (proven.x5t === undefined || proven.x5t !== p.x5t) {
    throw unacceptable(p.of, `it is certificate-bound: present the same client certificate${caller} (RFC 8705 §3)`);
  }
  t.binding = { x5t: p.x5t };
}
