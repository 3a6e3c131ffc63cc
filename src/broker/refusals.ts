import { OAuthError, oauth } from '../core/index.js';

/** How a grant refuses the NHI it names: unknown (or not the authenticated client), or disabled. */
export interface Refusals {
  invalid: (why: string) => OAuthError;
  disabled: (why: string) => OAuthError;
}

/**
 * RFC 8693 §2.2.2: "If … either the subject_token or actor_token are invalid or unacceptable,
 * the authorization server MUST respond with an error code of invalid_request" (not
 * invalid_grant, which RFC 7523 keeps for a bad JWT bearer assertion).
 */
export function unacceptable(name: 'subject_token' | 'actor_token', why: string): OAuthError {
  return oauth.invalidRequest(`the ${name} is not acceptable: ${why}`);
}

export function unacceptableAs(name: 'subject_token' | 'actor_token'): Refusals {
  const refuse = (why: string) => unacceptable(name, why);
  return { invalid: refuse, disabled: refuse };
}

/**
 * `access_denied` at the token endpoint: an operator decided against this request (a human
 * denied the approval, a kill switch is engaged, the NHI is disabled). Not one of RFC 6749
 * §5.2's codes: none of those says it (invalid_grant and invalid_client would tell the client
 * its credentials are wrong, unauthorized_client that it is misconfigured for the grant type);
 * RFC 8628 §3.5 uses access_denied at the token endpoint for exactly this, a denied
 * authorization the client waited on, and the SDK (AccessDeniedError) reads it. Status 400, as
 * §5.2 answers every refusal but invalid_client.
 */
export function denied(why: string): OAuthError {
  return new OAuthError('access_denied', why, 400);
}
