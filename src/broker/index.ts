export { Broker, toolIdOf, peerCertThumbprint, APPROVAL_TTL_MS, type BrokerDeps, type EnforcementOp, type EnforcementStore } from './broker.js';
export { mountBrokerRoutes, approvalJson } from './admin-routes.js';
export { AccessTokenVerifier, type JwksSource } from './access-token.js';
export { RevocationState, REVOCATION_SUBJECTS, KILL_SIGNAL_PREFIX, actorsOf, tokenFacts, type ActorFacts, type TokenFacts, type RevokedReason } from './revocation-state.js';
export { ToolCatalog, GRANT, TOKEN_TYPE, parseScope, sha256b64u, type AccessTokenClaims } from './tokens.js';
export { DpopVerifier, jwkThumbprint, athFor } from './dpop.js';
export { DpopNonces } from './dpop-nonce.js';
export { normalizeHtu } from './htu.js';
export { describeSignal } from './signal-note.js';
export type {
  BrokerStore, BrokerBatchStore, IssuedTokenRecord, RestrictionLookup, RevocationRecord, RevocationKind, KillSwitchRecord, KillScope, ApprovalRecord, ApprovalStatus,
} from './ports.js';
export { JwksFetcher } from './jwks-fetcher.js';
export { nodeVerifiable, publicKeyObject, verifyCompactAsync } from './jws.js';
export { assertJwsShape } from './jwt-guard.js';
