import { OAuthError, oauth, sendJson, type RequestContext } from '../core/index.js';
import { tokenFacts } from '../enforcement/index.js';
import { parentJtiOf, toolIdOf, type AccessTokenClaims } from '../jose/index.js';
import { authenticateClient } from './client-auth.js';
import { parseTokenRequest, required, sendOAuthError } from './request.js';
import type { BrokerServices } from './services.js';

/** RFC 7662 §2: the caller authenticates (private_key_jwt of an NHI, or an admin credential upstream). */
export async function handleIntrospect(s: BrokerServices, ctx: RequestContext, maxBodyBytes: number): Promise<void> {
  try {
    const { params } = await parseTokenRequest(ctx.req, maxBodyBytes);
    const caller = await authenticateClient(s, ctx.req, params, 'introspection');
    if (!caller) throw oauth.invalidClient('introspection requires client authentication (RFC 7662 §2.1)');
    const token = required(params, 'token');
    const inactive = () => sendJson(ctx.res, 200, { active: false });
    let claims: AccessTokenClaims;
    try {
      claims = await s.accessTokens.verify(token);
    } catch {
      return inactive();
    }
    const toolId = toolIdOf(claims.aud, s.issuer());
    // The revocation set, as the proxy's: a token exchanged from a revoked one is inactive too.
    if (s.enforcement.revocations.check(tokenFacts(claims, toolId))) return inactive();
    const { nhi } = await s.inventory.get(claims.sub);
    if (!nhi || nhi.status !== 'active') return inactive();
    // RFC 7662 §4: only the token's own NHI or a tool NHI may learn about it.
    const { nhi: callerNhi } = await s.inventory.get(caller);
    if (caller !== claims.sub && callerNhi?.class !== 'tool') return inactive();
    sendJson(ctx.res, 200, {
      active: true, iss: claims.iss, sub: claims.sub, aud: claims.aud, scope: claims.scope, client_id: claims.client_id,
      exp: claims.exp, iat: claims.iat, jti: claims.jti, token_type: claims.cnf?.jkt ? 'DPoP' : 'Bearer',
      ...(claims.cnf ? { cnf: claims.cnf } : {}), ...(claims.act ? { act: claims.act } : {}), mandate_tier: claims.mandate_tier,
      ...(parentJtiOf(claims.jti) !== undefined ? { mandate_parent_jti: parentJtiOf(claims.jti) } : {}),
    });
  } catch (err) {
    if (err instanceof OAuthError) return sendOAuthError(ctx, err);
    throw err;
  }
}
