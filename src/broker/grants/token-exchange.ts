import { OAuthError, oauth } from '../../core/index.js';
import { tokenFacts } from '../../enforcement/index.js';
import { MAX_EXCHANGE_DEPTH, TOKEN_TYPE, exchangeDepthOf, toolIdOf } from '../../jose/index.js';
import { unacceptable, unacceptableAs } from '../refusals.js';
import { required } from '../request.js';
import type { BrokerServices } from '../services.js';
import { activeNhi, fromWorkload, workload, type Grant, type Subject } from './subject.js';

/** The largest subject or actor token looked at. */
const MAX_TOKEN_PARAM = 16 * 1024;

/**
 * RFC 8693 §2.1: subject_token, and optionally actor_token for delegation.
 *
 * Without an actor token the caller holds the subject token: a bound subject token needs
 * proof of its key (narrowing). With one, the caller is the actor (§1.1): a bound actor token
 * needs proof of the actor's key and the new token is bound to it, so a copied actor token
 * cannot put its actor into `act`; the subject token is the evidence of delegation (its key
 * is not the caller's to prove) and the subject's `may_act` says who may act for it (§4.4).
 * §2.2.2: an invalid or unacceptable subject or actor token is `invalid_request`.
 */
export const tokenExchange: Grant = async (s, req, clientId) => {
  const p = req.params;
  const subjectToken = required(p, 'subject_token');
  const subjectType = required(p, 'subject_token_type');
  const requested = p.get('requested_token_type');
  if (requested !== undefined && requested !== TOKEN_TYPE.accessToken && requested !== TOKEN_TYPE.jwt) {
    throw oauth.invalidRequest('requested_token_type must be urn:ietf:params:oauth:token-type:access_token');
  }
  const actorToken = p.get('actor_token');
  const actorType = p.get('actor_token_type');
  if ((actorToken === undefined) !== (actorType === undefined)) {
    throw oauth.invalidRequest('actor_token and actor_token_type go together (RFC 8693 §2.1)');
  }
  if (actorToken === undefined) return presented(s, subjectToken, subjectType, 'subject_token', clientId);
  return delegation(s, { token: subjectToken, type: subjectType }, { token: actorToken, type: actorType! }, clientId);
};

interface Presented { token: string; type: string }

/** With an actor token: the actor acts for the subject, if the subject's `may_act` names it. */
async function delegation(s: BrokerServices, subjectToken: Presented, actorToken: Presented, clientId: string | undefined): Promise<Subject> {
  const actor = await presented(s, actorToken.token, actorToken.type, 'actor_token', clientId);
  if (clientId !== undefined && clientId !== actor.nhi.id) throw unacceptable('actor_token', 'the authenticated client is not the actor');
  // The actor acts in its own name: a delegated token as actor would hide who is acting.
  if (actor.act) throw unacceptable('actor_token', 'it is itself a delegated token (it has act): present the actor\'s own token');
  const subject = await presented(s, subjectToken.token, subjectToken.type, 'subject_token', undefined);
  if (!subject.nhi.mayAct.includes(actor.nhi.id)) {
    throw unacceptable('actor_token', `${actor.nhi.id} may not act for ${subject.nhi.id} (may_act, RFC 8693 §4.4)`);
  }
  return {
    ...subject,
    clientId: actor.clientId,
    // The delegated token lives no longer than either token it came from.
    notAfter: Math.min(subject.notAfter ?? Infinity, actor.notAfter ?? Infinity),
    proof: actor.proof,
    // RFC 8693 §4.1: the current actor, with the prior chain of delegation (the subject
    // token's act) nested inside it. `mandate_jti` names the Mandate token the actor presented,
    // so that revoking it stops what was delegated with it (RevocationState.check, actors).
    act: { sub: actor.nhi.id, ...(actor.parentJti !== undefined ? { mandate_jti: actor.parentJti } : {}), ...(subject.act ? { act: subject.act } : {}) },
    via: 'token_exchange_delegation',
  };
}

/** A subject or actor token (RFC 8693 §2.1). Every refusal is `invalid_request` (§2.2.2), naming which token. */
async function presented(
  s: BrokerServices, token: string, type: string, name: 'subject_token' | 'actor_token', clientId: string | undefined,
): Promise<Subject> {
  if (token.length > MAX_TOKEN_PARAM) throw unacceptable(name, 'it is too large');
  if (type === TOKEN_TYPE.accessToken) {
    const claims = await s.accessTokens.verify(token).catch((err: unknown) => {
      if (err instanceof OAuthError && err.status >= 500) throw err;
      throw unacceptable(name, 'it is not a valid Mandate access token');
    });
    const revoked = s.enforcement.revocations.check(tokenFacts(claims, toolIdOf(claims.aud, s.issuer())));
    if (revoked) throw unacceptable(name, `it was revoked (${revoked})`);
    if (name === 'subject_token' && exchangeDepthOf(claims.jti) >= MAX_EXCHANGE_DEPTH) {
      throw unacceptable(name, `it was already exchanged ${MAX_EXCHANGE_DEPTH} times from its first token: exchange from an earlier one`);
    }
    const cnf = claims.cnf;
    return {
      nhi: await activeNhi(s, claims.sub, unacceptableAs(name)), clientId: clientId ?? claims.client_id, notAfter: claims.exp * 1000,
      scopeCeiling: claims.scope.split(' '), audienceCeiling: claims.aud,
      ...(cnf?.jkt !== undefined || cnf?.['x5t#S256'] !== undefined ? { proof: { jkt: cnf.jkt, x5t: cnf['x5t#S256'], of: name } } : {}),
      act: claims.act, parentJti: claims.jti, runId: claims.mandate_run_id ?? null, via: 'token_exchange_narrowing',
    };
  }
  if (type === TOKEN_TYPE.jwt || type === TOKEN_TYPE.idToken) {
    const w = await workload(s, token).catch((err: unknown) => {
      if (err instanceof OAuthError && err.status < 500) throw unacceptable(name, err.message);
      throw err;
    });
    return fromWorkload(s, w, clientId, 'token_exchange', unacceptableAs(name));
  }
  throw oauth.invalidRequest(`${name}_type "${type.slice(0, 100)}" is not supported`);
}
