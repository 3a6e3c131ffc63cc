import type { IncomingMessage } from 'node:http';
import { OAuthError, secretEquals } from '../core/index.js';
import { peerCertThumbprint, type AccessTokenClaims, type AccessTokenVerifier, type DpopVerifier } from '../jose/index.js';
import { tokenFacts, type RevocationState, type RevokedReason, type TokenFacts } from '../enforcement/index.js';

/**
 * The token checks the proxy runs on every request (RFC 6750, RFC 9068 §4, RFC 9449 §7, RFC
 * 8705 §3): exactly one `Authorization` header with the Bearer or DPoP scheme, the token
 * verified against the broker's keys (its signature remembered by AccessTokenVerifier), the
 * revocation set consulted every time, then the binding: a DPoP proof for this method and
 * URL with `ath` and the token's `cnf.jkt`, or the TLS client certificate of `cnf.x5t#S256`.
 */

/** A 401/400 at the resource: the error code and which `WWW-Authenticate` scheme to answer with. */
export class ResourceAuthError extends OAuthError {
  constructor(
    error: 'invalid_request' | 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce',
    description: string,
    /** The scheme the client used (or should use); the challenge is written in it. */
    readonly scheme: 'Bearer' | 'DPoP',
    status = error === 'invalid_request' ? 400 : 401,
  ) {
    super(error, description, status);
  }
}

export interface CheckedToken {
  claims: AccessTokenClaims;
  /** What the revocation check reads of the token at this tool (checked again while an answer streams). */
  facts: TokenFacts;
  scheme: 'Bearer' | 'DPoP';
  /** How the token is bound: 'dpop', 'mtls' or 'none'. */
  binding: 'dpop' | 'mtls' | 'none';
}

const MAX_TOKEN_CHARS = 8192;
const B68 = /^[A-Za-z0-9\-._~+/]+=*$/; // RFC 6750 §2.1 b64token

export class TokenChecker {
  constructor(
    private readonly d: {
      accessTokens: AccessTokenVerifier;
      dpop: DpopVerifier;
      revocations: RevocationState;
      /** A call refused as revoked (off the allow path; for the time-to-revoke timeline). */
      onRevoked?: ((reason: RevokedReason, t: TokenFacts) => void) | undefined;
    },
  ) {}

  /**
   * Checks the request's token for the tool whose resource URL is `resource`, with `url` the
   * absolute URL the client called (the DPoP `htu`). Throws ResourceAuthError.
   */
  async check(req: IncomingMessage, toolId: string, resource: string, url: string): Promise<CheckedToken> {
    const { scheme, token } = credentialsOf(req);
    const claims = await this.verified(token, resource, scheme);

    const facts = tokenFacts(claims, toolId);
    const revoked = this.d.revocations.check(facts);
    if (revoked) {
      this.d.onRevoked?.(revoked, facts);
      // The SDK and agents key on "revoked" in the description (RFC 6750 §3.1 leaves the text to
      // us); when a signal caused it, its id says which.
      const signalId = this.d.revocations.signalOf(revoked, facts);
      throw new ResourceAuthError('invalid_token', `the access token was revoked (${revoked}${signalId ? ` by signal ${signalId}` : ''})`, scheme);
    }

    const jkt = claims.cnf?.jkt;
    const x5t = claims.cnf?.['x5t#S256'];
    if (jkt !== undefined) {
      // RFC 9449 §7.1: a DPoP-bound token is only accepted with the DPoP scheme and a proof.
      if (scheme !== 'DPoP') throw new ResourceAuthError('invalid_token', 'the access token is DPoP-bound: use the DPoP authorization scheme with a proof', 'DPoP');
      try {
        await this.d.dpop.verify(req.headers.dpop, { method: req.method ?? 'GET', url, accessToken: token, expectedJkt: jkt });
      } catch (err) {
        if (err instanceof OAuthError) {
          throw new ResourceAuthError(err.error === 'use_dpop_nonce' ? 'use_dpop_nonce' : 'invalid_dpop_proof', err.message, 'DPoP');
        }
        throw err;
      }
      return { claims, facts, scheme, binding: 'dpop' };
    }
    if (scheme === 'DPoP') {
      // RFC 9449 §7.2: the DPoP scheme with a token that is not DPoP-bound is an error.
      throw new ResourceAuthError('invalid_token', 'the access token is not DPoP-bound: use the Bearer scheme', 'DPoP');
    }
    if (x5t !== undefined) {
      const presented = peerCertThumbprint(req);
      // RFC 8705 §3: the certificate of this TLS connection must be the one the token names.
      if (presented === undefined || !secretEquals(presented, x5t)) {
        throw new ResourceAuthError('invalid_token', 'the access token is certificate-bound: present the same client certificate (RFC 8705 §3)', 'Bearer');
      }
      return { claims, facts, scheme, binding: 'mtls' };
    }
    return { claims, facts, scheme, binding: 'none' };
  }

  /**
   * Signature, `iss`, `typ`, `exp`, `nbf` (AccessTokenVerifier: the signature of a token it
   * verified before is remembered, until the JWKS changes; the claims are checked on every call),
   * then `aud` = this tool's resource.
   */
  private async verified(token: string, resource: string, scheme: 'Bearer' | 'DPoP'): Promise<AccessTokenClaims> {
    let claims: AccessTokenClaims;
    try {
      claims = await this.d.accessTokens.verify(token);
    } catch (err) {
      // The keys cannot be had (proxy.jwks_uri unreachable): 503, not a verdict on the token.
      if (err instanceof OAuthError && err.status === 503) throw err;
      if (err instanceof OAuthError) throw new ResourceAuthError('invalid_token', err.message === 'token expired' ? 'the access token expired' : err.message, scheme);
      throw err;
    }
    if (typeof claims.aud !== 'string' || typeof claims.scope !== 'string' || typeof claims.sub !== 'string') {
      throw new ResourceAuthError('invalid_token', 'the access token is not a Mandate tool token', scheme);
    }
    // A token for tool A presented at tool B fails here.
    if (claims.aud !== resource) throw new ResourceAuthError('invalid_token', 'the access token is for another tool (aud)', scheme);
    return claims;
  }
}

/**
 * RFC 6750 §2.1 / RFC 9449 §7.1: exactly one Authorization header, scheme Bearer or DPoP
 * (case-insensitive, RFC 9110 §11.1), one b64token. Node keeps only the first of repeated
 * Authorization headers, so they are counted in the raw headers: two are refused, not merged.
 */
export function credentialsOf(req: IncomingMessage): { scheme: 'Bearer' | 'DPoP'; token: string } {
  let authCount = 0;
  let dpopCount = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') authCount++;
    else if (name.length === 4 && name.toLowerCase() === 'dpop') dpopCount++;
  }
  if (authCount > 1) throw new ResourceAuthError('invalid_request', 'exactly one Authorization header is allowed', 'Bearer');
  if (dpopCount > 1) throw new ResourceAuthError('invalid_dpop_proof', 'exactly one DPoP header is allowed (RFC 9449 §4.3)', 'DPoP');
  const header = req.headers.authorization;
  if (!header) throw new ResourceAuthError('invalid_token', 'an access token is required', 'Bearer', 401);
  const sp = header.indexOf(' ');
  const schemeRaw = sp < 0 ? header : header.slice(0, sp);
  // `1*SP b64token` (RFC 6750 §2.1; RFC 9110 §11.4): only spaces separate the two. node:http has
  // already removed the whitespace around the field value (RFC 9110 §5.5); a tab or anything else
  // left over is not b64token and is refused below, not trimmed into a token.
  let start = sp + 1;
  while (sp >= 0 && header.charCodeAt(start) === 0x20) start++;
  const token = sp < 0 ? '' : header.slice(start);
  const lower = schemeRaw.toLowerCase();
  const scheme = lower === 'bearer' ? 'Bearer' : lower === 'dpop' ? 'DPoP' : undefined;
  if (!scheme) throw new ResourceAuthError('invalid_request', 'use the Bearer or DPoP authorization scheme', 'Bearer');
  if (token.length === 0 || token.length > MAX_TOKEN_CHARS || !B68.test(token)) {
    throw new ResourceAuthError('invalid_token', 'the access token is malformed', scheme);
  }
  return { scheme, token };
}
