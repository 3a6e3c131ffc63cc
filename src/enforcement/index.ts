// Enforcement: revocations, kill switches, restrictions (step-down / step-up) and approvals. The
// broker refuses to issue and the proxy refuses to forward by asking what is here.
export { Enforcement, type EnforcementDeps, type EnforcementOp, type StagingStore } from './enforcement.js';
export { RevocationState, REVOCATION_SUBJECTS, KILL_SIGNAL_PREFIX, actorsOf, tokenFacts, type ActorFacts, type TokenFacts, type RevokedReason } from './revocation-state.js';
export { RestrictionState, RESTRICTION_SUBJECTS, type Restriction } from './restriction-state.js';
export { Approvals, APPROVAL_TTL_MS, type ApprovalAsk, type ApprovalStore } from './approvals.js';
export { ApprovalGate, ApprovalRequiredError, type GateRequest } from './approval-gate.js';
export { describeSignal } from './signal-note.js';
export { mountEnforcementRoutes, approvalJson } from './admin-routes.js';
export type {
  EnforcementStore, RevocationRecord, RevocationKind, KillSwitchRecord, KillScope, ApprovalRecord, ApprovalStatus,
  RestrictionLookup, RestrictionRecord, RestrictionKind, IssuedTokenFacts, IssuedTokenLookup,
} from './ports.js';
