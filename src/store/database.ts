/**
 * Kysely table types for every table Mandate stores, portable across SQLite and PostgreSQL:
 *
 * - ids and names are TEXT;
 * - timestamps are epoch milliseconds in BIGINT (SQLite: INTEGER affinity). On PostgreSQL the
 *   store's pool parses int8 to a JS number (see store.ts), so both dialects return `number`;
 * - JSON is TEXT (the store stringifies on write and parses on read);
 * - booleans are INTEGER 0/1.
 *
 * Columns are snake_case; the store maps rows to the camelCase port records. Value sets such as
 * `status` are typed here but not enforced with CHECK constraints, because changing a CHECK in
 * SQLite needs a full table rebuild and new statuses are likely.
 */
import type { Generated } from 'kysely';
import type { CredentialType, NhiClass, NhiStatus, PermissionTier, RecordSource } from '../inventory/ports.js';
import type { AdminRole } from '../admin/ports.js';
import type { ApprovalStatus, KillScope, RevocationKind } from '../enforcement/ports.js';

/** A JSON document stored as TEXT. */
export type JsonText = string;
/** Epoch milliseconds. */
export type EpochMs = number;
/** 0 or 1. */
export type IntBool = 0 | 1;

export interface NhisTable {
  id: string;
  class: NhiClass;
  owner: string;
  system: string;
  environment: string;
  tier: PermissionTier;
  status: NhiStatus;
  description: string | null;
  /** JSON array of NHI ids. */
  may_act: JsonText;
  source: RecordSource;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface CredentialsTable {
  id: string;
  /** References nhis.id (ON DELETE CASCADE). */
  nhi_id: string;
  type: CredentialType;
  trust: string | null;
  subject: string | null;
  data: JsonText;
  exception_ticket: string | null;
  exception_expires_at: EpochMs | null;
  source: RecordSource;
  created_at: EpochMs;
  expires_at: EpochMs | null;
  last_rotated_at: EpochMs | null;
}

export interface GrantsTable {
  id: string;
  /** References nhis.id (ON DELETE CASCADE); (nhi_id, tool_id) is unique. */
  nhi_id: string;
  /** References tools.id (ON DELETE CASCADE). */
  tool_id: string;
  /** JSON array of action names. */
  actions: JsonText;
  change_ref: string | null;
  source: RecordSource;
  expires_at: EpochMs | null;
  created_at: EpochMs;
  updated_at: EpochMs;
  last_used_at: EpochMs | null;
}

export interface ToolsTable {
  id: string;
  kind: 'http' | 'mcp';
  upstream: string;
  description: string | null;
  config: JsonText;
  source: RecordSource;
  created_at: EpochMs;
  updated_at: EpochMs;
}

/** Trust entries (federation issuers), as synced from config or the admin API. */
export interface TrustTable {
  name: string;
  kind: string;
  issuer: string;
  /** The entry as declared (jwks / jwks_uri, algorithms, audience, claims, …). */
  config: JsonText;
  source: RecordSource;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface SigningKeysTable {
  kid: string;
  alg: 'ES256' | 'EdDSA';
  public_jwk: JsonText;
  /** The private JWK encrypted under the KEK; never clear text. */
  private_enc: string;
  created_at: EpochMs;
  activates_at: EpochMs;
  retires_at: EpochMs | null;
  expires_at: EpochMs | null;
}

export interface IssuedTokensTable {
  jti: string;
  nhi_id: string;
  /** The tool id (the token's `aud`). */
  audience: string;
  /** JSON array of granted action names. */
  scope: JsonText;
  tier: string;
  client_id: string | null;
  issued_at: EpochMs;
  expires_at: EpochMs;
  /** RFC 9449 DPoP key thumbprint. */
  cnf_jkt: string | null;
  /** RFC 8705 certificate thumbprint (x5t#S256). */
  cnf_x5t: string | null;
  /** RFC 8693 `act` claim (delegation chain), JSON. */
  act: JsonText | null;
  /** The jti of the token this one was exchanged from (migration 050), or null. */
  parent_jti: string | null;
  run_id: string | null;
}

export interface RevocationsTable {
  id: string;
  kind: RevocationKind;
  /** jti, NHI id or tool id; null for `global`. */
  target: string | null;
  /** Tokens issued before this instant are revoked (epoch ms). */
  not_before: EpochMs | null;
  reason: string | null;
  signal_id: string | null;
  created_at: EpochMs;
  /** When the revocation may be forgotten (e.g. the token's own expiry); null = never. */
  expires_at: EpochMs | null;
}

export interface ApprovalsTable {
  id: string;
  nhi_id: string;
  tool_id: string;
  action: string;
  /** base64url SHA-256 of the canonical arguments; nullable since 002_broker. */
  args_digest: string | null;
  status: ApprovalStatus;
  requested_at: EpochMs;
  expires_at: EpochMs;
  decided_by: string | null;
  decided_at: EpochMs | null;
  reason: string | null;
  redeemed_at: EpochMs | null;
  details: JsonText;
}

/** Since 002_broker. A kill switch is active while lifted_at is null. */
export interface KillSwitchesTable {
  id: string;
  scope: KillScope;
  /** NHI or tool id; null for `global`. */
  target: string | null;
  reason: string;
  created_by: string;
  created_at: EpochMs;
  lifted_at: EpochMs | null;
  lifted_by: string | null;
}

export interface AuditTable {
  /** Position in the hash chain, assigned from audit_head under a lock (not auto-increment). */
  seq: number;
  id: string;
  ts: EpochMs;
  type: string;
  actor: string | null;
  subject: string | null;
  tool: string | null;
  decision: string | null;
  trace_id: string | null;
  data: JsonText;
  prev_hash: string;
  hash: string;
}

/** Exactly one row (id = 1): the newest seq and hash; seq 0 and 64 zeros when empty. */
export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface SsfStreamsTable {
  id: string;
  direction: 'in' | 'out';
  config: JsonText;
  status: string;
  created_at: EpochMs;
  updated_at: EpochMs;
  /** Admin credential id owning an outbound stream (010_signals). */
  owner: string | null;
  status_reason: string | null;
}

/** Subjects of an SSF stream (010_signals); (stream_id, subject_key) is the key. */
export interface SsfSubjectsTable {
  stream_id: string;
  subject_key: string;
  subject: JsonText;
  nhi_id: string | null;
  created_at: EpochMs;
}

/** Step-down / step-up restrictions per NHI (010_signals); active while lifted_at is null. */
export interface RestrictionsTable {
  id: string;
  nhi_id: string;
  kind: string;
  fallback_tier: string;
  signal_id: string;
  reason: string;
  created_at: EpochMs;
  lifted_at: EpochMs | null;
  lifted_by: string | null;
}

export interface SignalApplicationsTable {
  signal_id: string;
  instance_id: string;
  role: string;
  applied_at: EpochMs | null;
  first_denied_at: EpochMs | null;
}

export interface SsfEventsTable {
  id: string;
  /** References ssf_streams.id (ON DELETE CASCADE); (stream_id, jti) is unique. */
  stream_id: string;
  jti: string;
  set_jwt: string;
  status: 'queued' | 'delivered' | 'acked' | 'error' | 'dead';
  attempts: Generated<number>;
  next_attempt_at: EpochMs | null;
  last_error: string | null;
  created_at: EpochMs;
}

export interface SignalsTable {
  id: string;
  nhi_id: string | null;
  jti: string | null;
  run_id: string | null;
  reason: string;
  severity: string;
  action: string;
  source: string;
  received_at: EpochMs;
  data: JsonText;
  /** 010_signals */
  credential_id: string | null;
  txn: string | null;
  status: Generated<string>;
  applied_at: EpochMs | null;
  error: string | null;
}

/** The findings of governance's detections. */
export interface DetectionsTable {
  id: string;
  nhi_id: string;
  detection: string;
  severity: string;
  evidence: JsonText;
  first_seen: EpochMs;
  last_seen: EpochMs;
  count: Generated<number>;
  status: 'open' | 'acknowledged' | 'resolved';
  /** 020_governance */
  key: Generated<string>;
  title: Generated<string>;
  status_by: string | null;
  status_at: EpochMs | null;
  status_note: string | null;
  last_event: string | null;
}

/** A detection muted for one NHI until `until` (020_governance). */
export interface DetectionMutesTable {
  id: string;
  nhi_id: string;
  detection: string;
  until: EpochMs;
  reason: string;
  created_by: string;
  created_at: EpochMs;
}

/** Automatic playbook actions (020_governance); (trigger, playbook) is unique. */
export interface PlaybookActionsTable {
  id: string;
  playbook: string;
  trigger: string;
  finding_id: string | null;
  nhi_id: string;
  action: string;
  dry_run: IntBool;
  signal_id: string | null;
  created_at: EpochMs;
  undone_at: EpochMs | null;
  undone_by: string | null;
}

/** The newest risk score governance computed per NHI (040_risk_scores). */
export interface RiskScoresTable {
  nhi_id: string;
  score: number;
  computed_at: EpochMs;
}

/** One row of programme metrics per UTC day (020_governance). */
export interface ProgrammeSnapshotsTable {
  day: string;
  taken_at: EpochMs;
  metrics: JsonText;
}

export interface AdminCredentialsTable {
  id: string;
  name: string;
  role: AdminRole;
  secret_hash: string;
  created_at: EpochMs;
  last_used_at: EpochMs | null;
  disabled: IntBool;
  expires_at: EpochMs | null;
  revoked_at: EpochMs | null;
}

export interface SsfStreamCredentialsTable {
  /** References ssf_streams.id (ON DELETE CASCADE). */
  stream_id: string;
  /** sha256 of the secret part, hex; the secret itself is never stored. */
  secret_hash: string;
  created_at: EpochMs;
}

export interface ReplayTable {
  scope: string;
  key: string;
  expires_at: EpochMs;
}

export interface Database {
  nhis: NhisTable;
  credentials: CredentialsTable;
  grants: GrantsTable;
  tools: ToolsTable;
  trust: TrustTable;
  signing_keys: SigningKeysTable;
  issued_tokens: IssuedTokensTable;
  revocations: RevocationsTable;
  approvals: ApprovalsTable;
  kill_switches: KillSwitchesTable;
  audit: AuditTable;
  audit_head: AuditHeadTable;
  ssf_streams: SsfStreamsTable;
  ssf_events: SsfEventsTable;
  ssf_subjects: SsfSubjectsTable;
  ssf_stream_credentials: SsfStreamCredentialsTable;
  restrictions: RestrictionsTable;
  signals: SignalsTable;
  signal_applications: SignalApplicationsTable;
  detections: DetectionsTable;
  detection_mutes: DetectionMutesTable;
  playbook_actions: PlaybookActionsTable;
  programme_snapshots: ProgrammeSnapshotsTable;
  risk_scores: RiskScoresTable;
  admin_credentials: AdminCredentialsTable;
  replay: ReplayTable;
}

/** The hash that precedes the first audit record. */
export const GENESIS_HASH = '0'.repeat(64);
