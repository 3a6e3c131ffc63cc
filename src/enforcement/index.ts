// Enforcement: revocations, kill switches, restrictions (step-down / step-up) and approvals. The
// broker refuses to issue and the proxy refuses to forward by asking what is here.
export { Enforcement, type EnforcementOp, type StagingStore } from './enforcement.js';
export { RevocationState, actorsOf, tokenFacts, type TokenFacts, type RevokedReason } from './revocation-state.js';
export { RestrictionState, RESTRICTION_SUBJECTS } from './restriction-state.js';
export { Approvals, APPROVAL_TTL_MS } from './approvals.js';
export { ApprovalGate, ApprovalRequiredError } from './approval-gate.js';
export { describeSignal } from './signal-note.js';
export { mountEnforcementRoutes } from './admin-routes.js';
export type {
  EnforcementStore, RevocationRecord, KillSwitchRecord, ApprovalRecord, RestrictionLookup, RestrictionRecord,
  IssuedTokenLookup,
} from './ports.js';
