// Governance: detections, findings, risk scores, playbooks, programme metrics.
export { Governance, type GovernanceDeps } from './governance.js';
export { RiskFeed, RiskView, RISK_CHANGED, type RiskChanged, type RiskFeedDeps, type RiskViewDeps } from './risk-feed.js';
export { Findings, DETECTION_RAISED, FINDING_STATUS_CHANGED, SEVERITY_RANK, atLeast, findingJson, muteJson, safeEvidence, type FindingsDeps } from './findings.js';
export { Detections, isPlaceholder, type DetectionsDeps } from './detections.js';
export { MintingBaseline, median, type BaselineOptions, type MintingVerdict } from './baseline.js';
export { RiskScorer, scoreNhi, RISK_WEIGHTS, type RiskScore, type RiskContribution, type RiskInputs, type RiskDeps } from './risk.js';
export { Playbooks, playbookActionJson, type PlaybookSignals, type KillSwitches, type PlaybooksDeps, type PlaybookConfig } from './playbooks.js';
export { Programme, programmeGauges, dayOf, weekOf, percentile, type ProgrammeMetrics, type ProgrammeDeps } from './programme.js';
export { mountGovernanceRoutes } from './admin-routes.js';
export { DETECTIONS, SEVERITIES, FINDING_STATUSES } from './ports.js';
export type {
  GovernanceStore, FindingRecord, FindingInput, FindingFilter, FindingStatus, FindingUpsertResult, DetectionName, Severity, MuteRecord,
  PlaybookActionRecord, ProgrammeSnapshotRecord, RiskScoreRecord,
} from './ports.js';
