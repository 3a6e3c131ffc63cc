// JOSE for every capability: the JWS shape guard, signing and verification, the JWKS fetcher,
// access-token verification, DPoP (RFC 9449) and its nonces, mTLS binding (RFC 8705), the
// access-token claims and the names the wire uses.
export { AccessTokenVerifier, type JwksSource, type RemoteJwksSource } from './access-token.js';
export { DpopVerifier, jwkThumbprint, athFor, checkAlgorithms, keyFitsAlg, keyUsableFor, parseCompactJws, publicJwkOf, type VerifiedDpopProof } from './dpop.js';
export { DpopNonces } from './dpop-nonce.js';
export { normalizeHtu } from './htu.js';
export { JwksFetcher, JwksFetchError, type VerificationKey } from './jwks-fetcher.js';
export { importPublicKey, nodeVerifiable, publicKeyObject, signCompactAsync, verifyCompactAsync } from './jws.js';
export { DEFAULT_MAX_JWS_BYTES, JwtGuardError, assertJwsShape, decodeUnverified } from './jwt-guard.js';
export { ReplayBatcher } from './replay-batcher.js';
export {
  GRANT, TOKEN_TYPE, LINEAGE_SEPARATOR, MAX_EXCHANGE_DEPTH, exchangeDepthOf, newJti, parentJtiOf, parseScope, sha256b64u, toolIdOf,
  type AccessTokenClaims,
} from './tokens.js';
export { peerCertThumbprint } from './mtls.js';
export { ClientAssertionVerifier, CLIENT_ASSERTION_TYPE, type VerifiedClientAssertion } from './client-assertion.js';
