// Governance: detections, findings, risk scores, playbooks, programme metrics.
export { Governance } from './governance.js';
export { RiskView } from './risk-feed.js';
export { safeEvidence } from './findings.js';
export { MintingBaseline } from './baseline.js';
export { programmeGauges, weekOf, percentile } from './programme.js';
export { mountGovernanceRoutes } from './admin-routes.js';
