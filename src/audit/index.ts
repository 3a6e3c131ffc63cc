export type { AuditEvent, AuditRecord, AuditHead, AuditFilter, AuditStore } from './ports.js';
export { GENESIS_HASH, canonicalRecord, canonicalJson, chainHash, type ChainedFields } from './chain.js';
export { REDACTED, scrubAuditData, scrubAuditJson, isSensitiveKey } from './scrub.js';
export { AuditLog, type AuditLogOptions, type AuditLogStats, type AuditRecordInput } from './audit-log.js';
export {
  verifyAuditChain, type VerifyAuditOptions, type AuditVerifyResult, type AuditProblem, type AuditProblemKind,
} from './verify.js';
export { mountAuditRoutes } from './admin-routes.js';
