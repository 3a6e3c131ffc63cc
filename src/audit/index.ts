export type { AuditRecord, AuditStore } from './ports.js';
export { GENESIS_HASH, canonicalRecord, canonicalJson, chainHash } from './chain.js';
export { REDACTED, scrubAuditData, scrubAuditJson, isSensitiveKey } from './scrub.js';
export { AuditLog, type AuditLogOptions } from './audit-log.js';
export { verifyAuditChain } from './verify.js';
export { mountAuditRoutes } from './admin-routes.js';
