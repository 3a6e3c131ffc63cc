import { OAuthError, oauth, sendJson, type RequestContext } from '../core/index.js';
import { authenticateClient } from './client-auth.js';
import { parseTokenRequest, required, sendOAuthError } from './request.js';
import type { BrokerServices } from './services.js';

/** Mandate admin credentials (`mdt.<id>.<secret>`, admin/auth.ts): tokens this server issues but does not revoke at RFC 7009's endpoint. */
const ADMIN_CREDENTIAL_SHAPE = /^mdt\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/;

/**
 * RFC 7009 §2: the client revokes a token issued to it, and with it every token exchanged
 * from it (lineage). An invalid, unknown or expired token is answered 200 (§2.2).
 */
export async function handleRevoke(s: BrokerServices, ctx: RequestContext, maxBodyBytes: number): Promise<void> {
  try {
    const { params } = await parseTokenRequest(ctx.req, maxBodyBytes);
    const caller = await authenticateClient(s, ctx.req, params, 'revocation');
    if (!caller) throw oauth.invalidClient('revocation requires client authentication (RFC 7009 §2.1)');
    const token = required(params, 'token');
    // §2.1: token_type_hint is a hint. A value this server does not know, or one naming a type
    // it does not issue (refresh_token: none for machines), extends the search to every type
    // it does: access tokens, the only kind RFC 7009 can revoke here. So it is not read.
    // §2.2.1: a Mandate admin credential is a token this server issues but does not revoke here.
    if (ADMIN_CREDENTIAL_SHAPE.test(token)) {
      throw new OAuthError('unsupported_token_type', 'admin credentials are managed through the admin API, not revoked with RFC 7009');
    }
    const claims = await s.accessTokens.verify(token).catch(() => undefined);
    if (claims) {
      // §2.1: "The authorization server first validates the client credentials … and then
      // verifies whether the token was issued to the client making the revocation request.
      // If this validation fails, the request is refused and the client is informed of the
      // error." The RFC 6749 §5.2 code for an authenticated client that may not do what it
      // asks is unauthorized_client (invalid_client would say its authentication failed,
      // invalid_grant that the token is bad; it is neither).
      if (claims.client_id !== caller) throw oauth.unauthorizedClient('the token was not issued to this client: only its client may revoke it (RFC 7009 §2.1)');
      await s.enforcement.revokeToken(claims.jti, claims.exp * 1000, `revoked by ${caller}`, `nhi:${caller}`);
    }
    sendJson(ctx.res, 200, {});
  } catch (err) {
    if (err instanceof OAuthError) return sendOAuthError(ctx, err);
    throw err;
  }
}
