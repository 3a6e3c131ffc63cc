// mandate/client: the agent side of Mandate. Keep this light: it ships inside agents and may
// import only src/core/errors.ts, this folder, jose and node: built-ins.
export {
  MandateClient, argsDigest, httpCallDigest, waitForApproval, GRANT_TYPE, TOKEN_TYPE,
  type ClientAuth, type GetTokenOptions, type MandateClientOptions, type TokenResult, type WaitForApprovalOptions,
} from './client.js';
export { DpopKey, normalizeHtu, type DpopAlg, type DpopProofOptions } from './dpop.js';
export {
  CLIENT_ASSERTION_TYPE, githubActionsOidc, privateKeyClient, projectedTokenFile, staticJwt,
  type GithubActionsOidcOptions, type PrivateKeyClient, type PrivateKeyClientOptions, type WorkloadSource,
} from './workload.js';
export {
  AccessDeniedError, ApprovalExpiredError, ApprovalRequiredError, ApprovalTimeoutError, AuthorizationPendingError, BrokerError,
  MandateClientError, TokenRevokedError, oauthErrorFrom,
} from './errors.js';
export { canonicalJson, type ClientClock } from './util.js';
