import type { IncomingMessage } from 'node:http';
import { OAuthError, challenge, oauth, readBody, sendJson, type RequestContext } from '../core/index.js';

/** A form request to the token, introspection or revocation endpoint. */
export interface TokenRequest {
  params: Map<string, string>;
  resource: string[];
  audience: string[];
}

/**
 * Form body (RFC 6749 §3.2): a repeated parameter is an error (§3.1), except `resource` and
 * `audience`, which RFC 8707 and RFC 8693 allow to repeat (the broker then says invalid_target).
 */
export async function parseTokenRequest(req: IncomingMessage, maxBodyBytes: number): Promise<TokenRequest> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw oauth.invalidRequest('Content-Type must be application/x-www-form-urlencoded');
  const body = (await readBody(req, maxBodyBytes)).toString('utf8');
  const params = new Map<string, string>();
  const resource: string[] = [];
  const audience: string[] = [];
  for (const [k, v] of new URLSearchParams(body)) {
    if (k === 'resource') resource.push(v);
    else if (k === 'audience') audience.push(v);
    else if (params.has(k)) throw oauth.invalidRequest(`parameter "${k.slice(0, 50)}" is repeated (RFC 6749 §3.1)`);
    else params.set(k, v);
  }
  return { params, resource, audience };
}

export function required(p: Map<string, string>, name: string): string {
  const v = p.get(name);
  if (v === undefined || v === '') throw oauth.invalidRequest(`${name} is required`);
  return v;
}

/** An OAuth error response (RFC 6749 §5.2); `invalid_client` (401) carries its challenge. */
export function sendOAuthError(ctx: RequestContext, err: OAuthError): void {
  sendJson(ctx.res, err.status, { error: err.error, error_description: err.message, ...err.extra }, err.status === 401 ? { 'www-authenticate': challenge('Basic', { realm: 'mandate', error: 'invalid_client' }) } : {});
}
