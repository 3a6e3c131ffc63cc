// JOSE for every capability: the JWS shape guard, signing and verification, the JWKS fetcher,
// access-token verification, DPoP (RFC 9449) and its nonces, mTLS binding (RFC 8705), the
// access-token claims and the names the wire uses.
export { AccessTokenVerifier } from './access-token.js';
export { DpopVerifier, jwkThumbprint, athFor } from './dpop.js';
export { DpopNonces } from './dpop-nonce.js';
export { JwksFetcher, JwksFetchError, type VerificationKey } from './jwks-fetcher.js';
export { nodeVerifiable, publicKeyObject, signCompactAsync, verifyCompactAsync } from './jws.js';
export { DEFAULT_MAX_JWS_BYTES, JwtGuardError, assertJwsShape } from './jwt-guard.js';
export { ReplayBatcher } from './replay-batcher.js';
export {
  GRANT, TOKEN_TYPE, LINEAGE_SEPARATOR, MAX_EXCHANGE_DEPTH, exchangeDepthOf, newJti, parentJtiOf, parseScope, toolIdOf,
  type AccessTokenClaims,
} from './tokens.js';
export { peerCertThumbprint } from './mtls.js';
export { ClientAssertionVerifier } from './client-assertion.js';
