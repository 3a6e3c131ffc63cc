/**
 * Row <-> record mapping: snake_case columns to the camelCase port records, JSON TEXT to
 * objects, INTEGER 0/1 to booleans. BIGINT columns go through Number() as well, because a
 * PostgreSQL pool without the int8 parser (see store.ts) would hand back strings.
 */
import type { Selectable } from 'kysely';
import type { CredentialRecord, GrantRecord, NhiRecord, ToolRecord } from '../inventory/ports.js';
import type { AuditRecord } from '../audit/ports.js';
import type { SigningKeyRecord } from '../keys/ports.js';
import type { AdminCredentialRecord } from '../admin/ports.js';
import type { IssuedTokenRecord } from '../broker/ports.js';
import type { ApprovalRecord, KillSwitchRecord, RestrictionKind, RestrictionRecord, RevocationRecord } from '../enforcement/ports.js';
import type {
  SignalAction, SignalRecord, SignalSeverity, SignalStatus, SsfEventRecord, SsfStreamRecord,
  SsfStreamStatus, SsfSubjectRecord,
} from '../signals/ports.js';
import type {
  DetectionName, FindingRecord, FindingStatus, MuteRecord, PlaybookActionRecord, ProgrammeSnapshotRecord, Severity,
} from '../governance/ports.js';
import type {
  DetectionMutesTable, DetectionsTable, PlaybookActionsTable, ProgrammeSnapshotsTable,
  AdminCredentialsTable, ApprovalsTable, AuditTable, CredentialsTable, GrantsTable, IssuedTokensTable, KillSwitchesTable,
  NhisTable, RestrictionsTable, RevocationsTable, SignalsTable, SigningKeysTable, SsfEventsTable, SsfStreamsTable, SsfSubjectsTable,
  ToolsTable,
} from './database.js';

const num = (v: number): number => Number(v);
const numOrNull = (v: number | null): number | null => (v === null ? null : Number(v));

export function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null || text === '') return fallback;
  return JSON.parse(text) as T;
}

export function nhiFromRow(r: Selectable<NhisTable>): NhiRecord {
  return {
    id: r.id, class: r.class, owner: r.owner, system: r.system, environment: r.environment, tier: r.tier, status: r.status,
    description: r.description, mayAct: parseJson<string[]>(r.may_act, []), source: r.source,
    createdAt: num(r.created_at), updatedAt: num(r.updated_at),
  };
}

export function nhiToRow(n: NhiRecord): NhisTable {
  return {
    id: n.id, class: n.class, owner: n.owner, system: n.system, environment: n.environment, tier: n.tier, status: n.status,
    description: n.description ?? null, may_act: JSON.stringify(n.mayAct ?? []), source: n.source,
    created_at: n.createdAt, updated_at: n.updatedAt,
  };
}

export function credentialFromRow(r: Selectable<CredentialsTable>): CredentialRecord {
  return {
    id: r.id, nhiId: r.nhi_id, type: r.type, trust: r.trust, subject: r.subject, data: parseJson(r.data, {}),
    exceptionTicket: r.exception_ticket, exceptionExpiresAt: numOrNull(r.exception_expires_at), source: r.source,
    createdAt: num(r.created_at), expiresAt: numOrNull(r.expires_at), lastRotatedAt: numOrNull(r.last_rotated_at),
  };
}

export function credentialToRow(c: CredentialRecord): CredentialsTable {
  return {
    id: c.id, nhi_id: c.nhiId, type: c.type, trust: c.trust ?? null, subject: c.subject ?? null, data: JSON.stringify(c.data ?? {}),
    exception_ticket: c.exceptionTicket ?? null, exception_expires_at: c.exceptionExpiresAt ?? null, source: c.source,
    created_at: c.createdAt, expires_at: c.expiresAt ?? null, last_rotated_at: c.lastRotatedAt ?? null,
  };
}

export function grantFromRow(r: Selectable<GrantsTable>): GrantRecord {
  return {
    id: r.id, nhiId: r.nhi_id, toolId: r.tool_id, actions: parseJson<string[]>(r.actions, []), changeRef: r.change_ref,
    source: r.source, expiresAt: numOrNull(r.expires_at), createdAt: num(r.created_at), updatedAt: num(r.updated_at),
    lastUsedAt: numOrNull(r.last_used_at),
  };
}

export function grantToRow(g: GrantRecord): GrantsTable {
  return {
    id: g.id, nhi_id: g.nhiId, tool_id: g.toolId, actions: JSON.stringify(g.actions ?? []), change_ref: g.changeRef ?? null,
    source: g.source, expires_at: g.expiresAt ?? null, created_at: g.createdAt, updated_at: g.updatedAt,
    last_used_at: g.lastUsedAt ?? null,
  };
}

export function toolFromRow(r: Selectable<ToolsTable>): ToolRecord {
  return {
    id: r.id, kind: r.kind, upstream: r.upstream, description: r.description, config: parseJson(r.config, {}),
    source: r.source, createdAt: num(r.created_at), updatedAt: num(r.updated_at),
  };
}

export function toolToRow(t: ToolRecord): ToolsTable {
  return {
    id: t.id, kind: t.kind, upstream: t.upstream, description: t.description ?? null, config: JSON.stringify(t.config ?? {}),
    source: t.source, created_at: t.createdAt, updated_at: t.updatedAt,
  };
}

export function keyFromRow(r: Selectable<SigningKeysTable>): SigningKeyRecord {
  return {
    kid: r.kid, alg: r.alg, publicJwk: parseJson(r.public_jwk, {}), privateEnc: r.private_enc, createdAt: num(r.created_at),
    activatesAt: num(r.activates_at), retiresAt: numOrNull(r.retires_at), expiresAt: numOrNull(r.expires_at),
  };
}

export function keyToRow(k: SigningKeyRecord): SigningKeysTable {
  return {
    kid: k.kid, alg: k.alg, public_jwk: JSON.stringify(k.publicJwk), private_enc: k.privateEnc, created_at: k.createdAt,
    activates_at: k.activatesAt, retires_at: k.retiresAt ?? null, expires_at: k.expiresAt ?? null,
  };
}

export function adminFromRow(r: Selectable<AdminCredentialsTable>): AdminCredentialRecord {
  return {
    id: r.id, name: r.name, role: r.role, secretHash: r.secret_hash, createdAt: num(r.created_at),
    lastUsedAt: numOrNull(r.last_used_at), disabled: Number(r.disabled) !== 0,
    expiresAt: numOrNull(r.expires_at), revokedAt: numOrNull(r.revoked_at),
  };
}

export function adminToRow(a: AdminCredentialRecord): AdminCredentialsTable {
  return {
    id: a.id, name: a.name, role: a.role, secret_hash: a.secretHash, created_at: a.createdAt,
    last_used_at: a.lastUsedAt ?? null, disabled: a.disabled ? 1 : 0, expires_at: a.expiresAt ?? null, revoked_at: a.revokedAt ?? null,
  };
}

export function auditFromRow(r: Selectable<AuditTable>): AuditRecord {
  return {
    seq: num(r.seq), id: r.id, ts: num(r.ts), type: r.type, actor: r.actor, subject: r.subject, tool: r.tool,
    decision: r.decision, traceId: r.trace_id, data: parseJson(r.data, {}), prevHash: r.prev_hash, hash: r.hash,
  };
}

export function issuedTokenFromRow(r: Selectable<IssuedTokensTable>): IssuedTokenRecord {
  return {
    jti: r.jti, nhiId: r.nhi_id, audience: r.audience, scope: parseJson<string[]>(r.scope, []), tier: r.tier, clientId: r.client_id,
    issuedAt: num(r.issued_at), expiresAt: num(r.expires_at), cnfJkt: r.cnf_jkt, cnfX5t: r.cnf_x5t,
    act: parseJson<Record<string, unknown> | null>(r.act, null), runId: r.run_id, parentJti: r.parent_jti ?? null,
  };
}

export function issuedTokenToRow(t: IssuedTokenRecord): IssuedTokensTable {
  return {
    jti: t.jti, nhi_id: t.nhiId, audience: t.audience, scope: JSON.stringify(t.scope ?? []), tier: t.tier, client_id: t.clientId ?? null,
    issued_at: t.issuedAt, expires_at: t.expiresAt, cnf_jkt: t.cnfJkt ?? null, cnf_x5t: t.cnfX5t ?? null,
    act: t.act == null ? null : JSON.stringify(t.act), run_id: t.runId ?? null, parent_jti: t.parentJti ?? null,
  };
}

export function revocationFromRow(r: Selectable<RevocationsTable>): RevocationRecord {
  return {
    id: r.id, kind: r.kind, target: r.target, notBefore: numOrNull(r.not_before), reason: r.reason, signalId: r.signal_id,
    createdAt: num(r.created_at), expiresAt: numOrNull(r.expires_at),
  };
}

export function revocationToRow(v: RevocationRecord): RevocationsTable {
  return {
    id: v.id, kind: v.kind, target: v.target ?? null, not_before: v.notBefore ?? null, reason: v.reason ?? null,
    signal_id: v.signalId ?? null, created_at: v.createdAt, expires_at: v.expiresAt ?? null,
  };
}

export function killSwitchFromRow(r: Selectable<KillSwitchesTable>): KillSwitchRecord {
  return {
    id: r.id, scope: r.scope, target: r.target, reason: r.reason, createdBy: r.created_by, createdAt: num(r.created_at),
    liftedAt: numOrNull(r.lifted_at), liftedBy: r.lifted_by,
  };
}

export function killSwitchToRow(k: KillSwitchRecord): KillSwitchesTable {
  return {
    id: k.id, scope: k.scope, target: k.target ?? null, reason: k.reason, created_by: k.createdBy, created_at: k.createdAt,
    lifted_at: k.liftedAt ?? null, lifted_by: k.liftedBy ?? null,
  };
}

export function approvalFromRow(r: Selectable<ApprovalsTable>): ApprovalRecord {
  return {
    id: r.id, nhiId: r.nhi_id, toolId: r.tool_id, action: r.action, argsDigest: r.args_digest, status: r.status,
    requestedAt: num(r.requested_at), expiresAt: num(r.expires_at), decidedBy: r.decided_by, decidedAt: numOrNull(r.decided_at),
    reason: r.reason, redeemedAt: numOrNull(r.redeemed_at), details: parseJson(r.details, {}),
  };
}

export function approvalToRow(a: ApprovalRecord): ApprovalsTable {
  return {
    id: a.id, nhi_id: a.nhiId, tool_id: a.toolId, action: a.action, args_digest: a.argsDigest ?? null, status: a.status,
    requested_at: a.requestedAt, expires_at: a.expiresAt, decided_by: a.decidedBy ?? null, decided_at: a.decidedAt ?? null,
    reason: a.reason ?? null, redeemed_at: a.redeemedAt ?? null, details: JSON.stringify(a.details ?? {}),
  };
}

export function signalFromRow(r: Selectable<SignalsTable>): SignalRecord {
  return {
    id: r.id, nhiId: r.nhi_id, jti: r.jti, runId: r.run_id, credentialId: r.credential_id, reason: r.reason,
    severity: r.severity as SignalSeverity, action: r.action as SignalAction, source: r.source, txn: r.txn,
    receivedAt: num(r.received_at), appliedAt: numOrNull(r.applied_at), status: r.status as SignalStatus, error: r.error,
    data: parseJson(r.data, {}),
  };
}

export function signalToRow(v: SignalRecord): Omit<SignalsTable, 'status'> & { status: string } {
  return {
    id: v.id, nhi_id: v.nhiId ?? null, jti: v.jti ?? null, run_id: v.runId ?? null, credential_id: v.credentialId ?? null,
    reason: v.reason, severity: v.severity, action: v.action, source: v.source, txn: v.txn ?? null, received_at: v.receivedAt,
    applied_at: v.appliedAt ?? null, status: v.status, error: v.error ?? null, data: JSON.stringify(v.data ?? {}),
  };
}

export function restrictionFromRow(r: Selectable<RestrictionsTable>): RestrictionRecord {
  return {
    id: r.id, nhiId: r.nhi_id, kind: r.kind as RestrictionKind, fallbackTier: r.fallback_tier, signalId: r.signal_id, reason: r.reason,
    createdAt: num(r.created_at), liftedAt: numOrNull(r.lifted_at), liftedBy: r.lifted_by,
  };
}

export function restrictionToRow(v: RestrictionRecord): RestrictionsTable {
  return {
    id: v.id, nhi_id: v.nhiId, kind: v.kind, fallback_tier: v.fallbackTier, signal_id: v.signalId, reason: v.reason,
    created_at: v.createdAt, lifted_at: v.liftedAt ?? null, lifted_by: v.liftedBy ?? null,
  };
}

export function ssfStreamFromRow(r: Selectable<SsfStreamsTable>): SsfStreamRecord {
  return {
    id: r.id, direction: r.direction, owner: r.owner, config: parseJson(r.config, {}), status: r.status as SsfStreamStatus,
    statusReason: r.status_reason, createdAt: num(r.created_at), updatedAt: num(r.updated_at),
  };
}

export function ssfStreamToRow(v: SsfStreamRecord): SsfStreamsTable {
  return {
    id: v.id, direction: v.direction, owner: v.owner ?? null, config: JSON.stringify(v.config ?? {}), status: v.status,
    status_reason: v.statusReason ?? null, created_at: v.createdAt, updated_at: v.updatedAt,
  };
}

export function ssfSubjectFromRow(r: Selectable<SsfSubjectsTable>): SsfSubjectRecord {
  return { streamId: r.stream_id, key: r.subject_key, subject: parseJson(r.subject, {}), nhiId: r.nhi_id, createdAt: num(r.created_at) };
}

export function ssfEventFromRow(r: Selectable<SsfEventsTable>): SsfEventRecord {
  return {
    id: r.id, streamId: r.stream_id, jti: r.jti, setJwt: r.set_jwt, status: r.status, attempts: num(r.attempts),
    nextAttemptAt: numOrNull(r.next_attempt_at), lastError: r.last_error, createdAt: num(r.created_at),
  };
}

export function findingFromRow(r: Selectable<DetectionsTable>): FindingRecord {
  return {
    id: r.id, nhiId: r.nhi_id, detection: r.detection as DetectionName, key: r.key, severity: r.severity as Severity, title: r.title,
    evidence: parseJson(r.evidence, {}), firstSeen: num(r.first_seen), lastSeen: num(r.last_seen), count: num(r.count),
    status: r.status as FindingStatus, statusBy: r.status_by, statusAt: numOrNull(r.status_at), statusNote: r.status_note, lastEvent: r.last_event,
  };
}

export function muteFromRow(r: Selectable<DetectionMutesTable>): MuteRecord {
  return {
    id: r.id, nhiId: r.nhi_id, detection: r.detection as DetectionName, until: num(r.until), reason: r.reason, createdBy: r.created_by,
    createdAt: num(r.created_at),
  };
}

export function muteToRow(v: MuteRecord): DetectionMutesTable {
  return { id: v.id, nhi_id: v.nhiId, detection: v.detection, until: v.until, reason: v.reason, created_by: v.createdBy, created_at: v.createdAt };
}

export function playbookActionFromRow(r: Selectable<PlaybookActionsTable>): PlaybookActionRecord {
  return {
    id: r.id, playbook: r.playbook, trigger: r.trigger, findingId: r.finding_id, nhiId: r.nhi_id, action: r.action as PlaybookActionRecord['action'],
    dryRun: Number(r.dry_run) === 1, signalId: r.signal_id, createdAt: num(r.created_at), undoneAt: numOrNull(r.undone_at), undoneBy: r.undone_by,
  };
}

export function playbookActionToRow(v: PlaybookActionRecord): PlaybookActionsTable {
  return {
    id: v.id, playbook: v.playbook, trigger: v.trigger, finding_id: v.findingId, nhi_id: v.nhiId, action: v.action, dry_run: v.dryRun ? 1 : 0,
    signal_id: v.signalId, created_at: v.createdAt, undone_at: v.undoneAt, undone_by: v.undoneBy,
  };
}

export function snapshotFromRow(r: Selectable<ProgrammeSnapshotsTable>): ProgrammeSnapshotRecord {
  return { day: r.day, takenAt: num(r.taken_at), metrics: parseJson(r.metrics, {}) };
}
