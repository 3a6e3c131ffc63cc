/** What governance needs from storage (implemented by store/). Timestamps are epoch ms. */

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];

export type FindingStatus = 'open' | 'acknowledged' | 'resolved';
export const FINDING_STATUSES: readonly FindingStatus[] = ['open', 'acknowledged', 'resolved'];

/** The detections governance runs. */
export type DetectionName =
  | 'minting_rate'
  | 'new_grant'
  | 'unusual_scope'
  | 'out_of_bounds'
  | 'stolen_token'
  | 'shadow_agent'
  | 'stale_credential';
export const DETECTIONS: readonly DetectionName[] = [
  'minting_rate', 'new_grant', 'unusual_scope', 'out_of_bounds', 'stolen_token', 'shadow_agent', 'stale_credential',
];

/**
 * One finding: a detection about one NHI and one key (what exactly repeated: `spike`,
 * `scope:tickets:delete_ticket`, `jti:…`). A repeat of (nhi, detection, key) while the finding
 * is not resolved updates lastSeen and count; after it was resolved, a new finding starts.
 */
export interface FindingRecord {
  id: string;
  nhiId: string;
  detection: DetectionName;
  key: string;
  severity: Severity;
  title: string;
  /** Non-secret facts: counts, thresholds, jtis, thumbprints, addresses; never a token or secret. */
  evidence: Record<string, unknown>;
  firstSeen: number;
  lastSeen: number;
  count: number;
  status: FindingStatus;
  /** Who acknowledged or resolved it, when, and why. */
  statusBy: string | null;
  statusAt: number | null;
  statusNote: string | null;
  /** The last event counted (bus message id, sweep round): a redelivered event is not counted twice. */
  lastEvent: string | null;
}

export interface FindingInput extends Pick<FindingRecord, 'nhiId' | 'detection' | 'key' | 'severity' | 'title' | 'evidence'> {
  at: number;
  /** Idempotence key of the event that caused this (bus message id, sweep round). */
  eventId: string;
}

export interface FindingUpsertResult {
  finding: FindingRecord;
  /** `created`: a new row; `updated`: a repeat counted; `duplicate`: this event was already counted. */
  outcome: 'created' | 'updated' | 'duplicate';
}

export interface FindingFilter {
  nhiId?: string;
  detection?: string;
  status?: FindingStatus;
  /** Only findings at or above this severity. */
  minSeverity?: Severity;
  limit?: number;
}

/** A detection muted for one NHI until an end date. */
export interface MuteRecord {
  id: string;
  nhiId: string;
  detection: DetectionName;
  until: number;
  reason: string;
  createdBy: string;
  createdAt: number;
}

/** An automatic action a playbook took (or, in dry-run, would have taken). */
export interface PlaybookActionRecord {
  id: string;
  playbook: string;
  /** What triggered it: `finding:<id>` or `score:<nhi>`; (trigger, playbook) is unique, so it acts once. */
  trigger: string;
  findingId: string | null;
  nhiId: string;
  action: 'revoke_tokens' | 'step_down' | 'step_up' | 'disable';
  dryRun: boolean;
  signalId: string | null;
  createdAt: number;
  undoneAt: number | null;
  undoneBy: string | null;
}

/** One day's programme metrics (the trend `mandate report metrics` shows). */
export interface ProgrammeSnapshotRecord {
  /** YYYY-MM-DD (UTC). */
  day: string;
  takenAt: number;
  metrics: Record<string, unknown>;
}

/** The newest score governance computed for an NHI (table `risk_scores`). */
export interface RiskScoreRecord {
  nhiId: string;
  /** 0–100. */
  score: number;
  computedAt: number;
}

export interface GovernanceStore {
  upsertFinding(f: FindingInput, newId: string): Promise<FindingUpsertResult>;
  getFinding(id: string): Promise<FindingRecord | undefined>;
  /** Newest lastSeen first; `limit` defaults to 100. */
  listFindings(filter?: FindingFilter): Promise<FindingRecord[]>;
  /** Sets status, statusBy, statusAt, statusNote; undefined when there is no such finding. */
  setFindingStatus(id: string, status: FindingStatus, by: string, at: number, note: string | null): Promise<FindingRecord | undefined>;

  addMute(m: MuteRecord): Promise<void>;
  /** Mutes in force at `activeAt` (all when undefined), oldest first. */
  listMutes(filter?: { nhiId?: string; activeAt?: number }): Promise<MuteRecord[]>;
  deleteMute(id: string): Promise<boolean>;

  /** Inserts unless (trigger, playbook) exists; true when this call inserted it (so one instance acts once). */
  claimPlaybookAction(a: PlaybookActionRecord): Promise<boolean>;
  setPlaybookActionSignal(id: string, signalId: string | null): Promise<void>;
  getPlaybookAction(id: string): Promise<PlaybookActionRecord | undefined>;
  /** Newest first. */
  listPlaybookActions(filter?: { nhiId?: string; limit?: number }): Promise<PlaybookActionRecord[]>;
  /** Marks it undone once; undefined when there is no such action or it was already undone. */
  markPlaybookActionUndone(id: string, by: string, at: number): Promise<PlaybookActionRecord | undefined>;

  /** Inserts or replaces the day's snapshot. */
  putProgrammeSnapshot(s: ProgrammeSnapshotRecord): Promise<void>;
  /** Oldest first. */
  listProgrammeSnapshots(sinceDay?: string): Promise<ProgrammeSnapshotRecord[]>;

  /** Upserts each NHI's score; a row older (computedAt) than the stored one is ignored. */
  putRiskScores(rows: readonly RiskScoreRecord[]): Promise<void>;
  /** Every stored score, by NHI id. */
  listRiskScores(): Promise<RiskScoreRecord[]>;

  /** Tokens issued per NHI per UTC hour since `since` (from issued_tokens): the minting baseline after a restart. */
  issuanceByHour(since: number): Promise<Array<{ nhiId: string; hour: number; count: number }>>;
  /** Denials (token.denied, tool.call_denied) per NHI in the audit log since `since`. */
  denialsByNhi(since: number): Promise<Map<string, number>>;
}
