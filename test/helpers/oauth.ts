/**
 * Requests to the broker's OAuth endpoints and the proxy, as an agent (or an attacker) sends
 * them, for the token exchange, standards and adversarial tests. Nothing here decides anything:
 * every answer is the real server's.
 */
import { createHash } from 'node:crypto';
import { ASSERTION_TYPE, clientAssertion, dpopProof, type TestAgent, type TestDpopKey } from './agent.js';

export const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

export interface OAuthAnswer {
  status: number;
  headers: Headers;
  body: Record<string, any>;
}

/** POSTs a form (a value that is an array repeats the parameter) to `url`. */
export async function postForm(url: string, form: Record<string, string | string[]>, headers: Record<string, string> = {}): Promise<OAuthAnswer> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const x of [v].flat()) body.append(k, x);
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  const text = await res.text();
  let json: Record<string, any> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, any>) : {};
  } catch {
    json = { raw: text };
  }
  return { status: res.status, headers: res.headers, body: json };
}

/** The form members of private_key_jwt client authentication (RFC 7523 §2.2), `aud` the issuer. */
export async function clientAuth(a: TestAgent, issuer: string): Promise<Record<string, string>> {
  return { client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(a, issuer) };
}

/** base64url SHA-256: `ath` of a token (RFC 9449 §4.2), argument digests. */
export function b64uSha256(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}

/** client_credentials with private_key_jwt, bound to `dpop` when given. Returns the answer as it is. */
export async function clientCredentials(
  issuer: string, a: TestAgent, o: { resource: string; scope: string; dpop?: TestDpopKey; extra?: Record<string, string>; at?: string },
): Promise<OAuthAnswer> {
  const endpoint = `${issuer}/oauth/token`;
  return postForm(`${o.at ?? issuer}/oauth/token`, {
    grant_type: 'client_credentials', ...(await clientAuth(a, issuer)), resource: o.resource, scope: o.scope, ...o.extra,
  }, o.dpop ? { dpop: await dpopProof(o.dpop, 'POST', endpoint) } : {});
}

/**
 * RFC 8693 token exchange of a Mandate access token (`subject`), optionally with an actor
 * token; `dpop` proves the key of the caller; `auth` adds client authentication.
 */
export async function exchange(
  issuer: string,
  o: {
    subject: string; subjectType?: string; actor?: string; actorType?: string; resource: string; scope: string;
    dpop?: TestDpopKey; auth?: TestAgent; extra?: Record<string, string>; at?: string;
  },
): Promise<OAuthAnswer> {
  const endpoint = `${issuer}/oauth/token`;
  return postForm(`${o.at ?? issuer}/oauth/token`, {
    grant_type: EXCHANGE, subject_token: o.subject, subject_token_type: o.subjectType ?? AT_TYPE,
    ...(o.actor !== undefined ? { actor_token: o.actor, actor_token_type: o.actorType ?? AT_TYPE } : {}),
    resource: o.resource, scope: o.scope, ...(o.auth ? await clientAuth(o.auth, issuer) : {}), ...o.extra,
  }, o.dpop ? { dpop: await dpopProof(o.dpop, 'POST', endpoint) } : {});
}

/** RFC 7662 introspection, authenticated with `by`'s private_key_jwt. */
export async function introspect(issuer: string, by: TestAgent, token: string, at = issuer): Promise<OAuthAnswer> {
  return postForm(`${at}/oauth/introspect`, { token, ...(await clientAuth(by, issuer)) });
}

/** RFC 7009 revocation, authenticated with `by`'s private_key_jwt. */
export async function revokeAtEndpoint(issuer: string, by: TestAgent, token: string, extra: Record<string, string> = {}, at = issuer): Promise<OAuthAnswer> {
  return postForm(`${at}/oauth/revoke`, { token, ...(await clientAuth(by, issuer)), ...extra });
}

/**
 * A call through the proxy to `{issuer}/tools/{tool}{path}` (reached at `at`): DPoP with a proof
 * (`ath`, `htu` the issuer's URL) when `dpop` is given, Bearer otherwise.
 */
export async function callTool(
  issuer: string, tool: string, path: string, token: string, o: { dpop?: TestDpopKey; method?: string; at?: string; body?: string } = {},
): Promise<{ status: number; error: string | undefined; description: string | undefined }> {
  const method = o.method ?? 'GET';
  const htu = `${issuer}/tools/${tool}${path}`;
  const headers: Record<string, string> = o.dpop
    ? { authorization: `DPoP ${token}`, dpop: await dpopProof(o.dpop, method, htu, { ath: b64uSha256(token) }) }
    : { authorization: `Bearer ${token}` };
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${o.at ?? issuer}/tools/${tool}${path}`, { method, headers, ...(o.body !== undefined ? { body: o.body } : {}) });
  const text = await res.text();
  let body: { error?: string; error_description?: string } = {};
  try {
    body = text ? (JSON.parse(text) as typeof body) : {};
  } catch {
    // A tool's answer need not be JSON.
  }
  return { status: res.status, error: body.error, description: body.error_description };
}

/** The claims of a JWT, unverified (tests read what the broker put in). */
export function claimsOf(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, any>;
}
