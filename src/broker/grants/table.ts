import { oauth } from '../../core/index.js';
import { GRANT } from '../../jose/index.js';
import { clientCredentials } from './client-credentials.js';
import { jwtBearer } from './jwt-bearer.js';
import { tokenExchange } from './token-exchange.js';
import type { Grant } from './subject.js';

/** The grant types the token endpoint serves, each with its handler; the RFC 8414 metadata lists these. */
export const GRANTS: ReadonlyMap<string, Grant> = new Map<string, Grant>([
  [GRANT.clientCredentials, clientCredentials],
  [GRANT.tokenExchange, tokenExchange],
  [GRANT.jwtBearer, jwtBearer],
]);

/** The handler of the request's `grant_type`, or its refusal. */
export function grantFor(type: string | undefined): Grant {
  if (type === undefined) throw oauth.invalidRequest('grant_type is required');
  const grant = GRANTS.get(type);
  if (grant) return grant;
  if (type === 'refresh_token') throw oauth.unsupportedGrantType('no refresh tokens for machines: re-federate with your workload identity');
  throw oauth.unsupportedGrantType(`grant_type "${type.slice(0, 100)}" is not supported`);
}
