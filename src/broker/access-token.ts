import { createLocalJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { OAuthError, type Clock } from '../core/index.js';
import type { AccessTokenClaims } from './tokens.js';

/** Where the verification keys come from: the broker's own JWKS (in process) or a fetched one. */
export type JwksSource = () => { keys: Record<string, unknown>[] };

/**
 * Verifies Mandate's own access tokens (RFC 9068 §4): signature against the broker's JWKS
 * only, `typ` = `at+jwt`, algorithms pinned to what Mandate signs with, `iss` exact, `exp`
 * with a small skew. The key set object is rebuilt only when the JWKS changes (rotation).
 */
export class AccessTokenVerifier {
  private keySet: JWTVerifyGetKey | undefined;
  private keySetFor: string | undefined;

  constructor(
    private readonly opts: { issuer: () => string; jwks: JwksSource; clock: Clock; skewS?: number; maxBytes?: number },
  ) {}

  async verify(token: string, expectedAudience?: string): Promise<AccessTokenClaims> {
    if (token.length > (this.opts.maxBytes ?? 8192)) throw new OAuthError('invalid_token', 'token too large', 401);
    const jwks = this.opts.jwks();
    const fingerprint = jwks.keys.map((k) => k.kid).join(',');
    if (!this.keySet || fingerprint !== this.keySetFor) {
      this.keySet = createLocalJWKSet(jwks as never);
      this.keySetFor = fingerprint;
    }
    try {
      const { payload } = await jwtVerify(token, this.keySet, {
        issuer: this.opts.issuer(),
        typ: 'at+jwt',
        algorithms: ['ES256', 'EdDSA'],
        clockTolerance: this.opts.skewS ?? 5,
        currentDate: new Date(this.opts.clock.now()),
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'aud'],
        ...(expectedAudience ? { audience: expectedAudience } : {}),
      });
      return payload as unknown as AccessTokenClaims;
    } catch (err) {
      const code = (err as { code?: string }).code;
      const why =
        code === 'ERR_JWT_EXPIRED' ? 'token expired'
          : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' ? `token ${(err as { claim?: string }).claim ?? 'claim'} is not valid here`
            : 'token is not a valid Mandate access token';
      throw new OAuthError('invalid_token', why, 401);
    }
  }
}
