/** What signals needs from storage (and, injected by app.ts, from the broker's guards). Timestamps are epoch ms. */

import type { ReplayInsert } from '../core/index.js';
import type { RevocationRecord } from '../enforcement/index.js';

/** What a signal asks Mandate to do. */
export type SignalAction = 'revoke_tokens' | 'step_down' | 'step_up' | 'disable' | 'block';
export const SIGNAL_ACTIONS: readonly SignalAction[] = ['revoke_tokens', 'step_down', 'step_up', 'disable', 'block'];

export type SignalSeverity = 'low' | 'medium' | 'high' | 'critical';
export const SIGNAL_SEVERITIES: readonly SignalSeverity[] = ['low', 'medium', 'high', 'critical'];

/**
 * - `recorded`: stored, not yet applied;
 * - `applied`: enforced through the broker (appliedAt set);
 * - `unmapped`: from a SET whose subject maps to no NHI (kept for the record, nothing enforced);
 * - `ignored`: recorded only, nothing to enforce (kept for other sources; an SSF event that maps to
 *   no action is audited as `ssf.event_ignored` instead of becoming a signal);
 * - `failed`: enforcement threw (error says why).
 */
export type SignalStatus = 'recorded' | 'applied' | 'unmapped' | 'ignored' | 'failed';

/** The one internal signal. Every source (operator, SET receiver, detections later) produces this. */
export interface SignalRecord {
  id: string;
  /** Subject: at least one of these is set for an enforceable signal. */
  nhiId: string | null;
  /** A token's `jti`: revoke_tokens then revokes only that token. */
  jti: string | null;
  /** Run or session id (`mandate_run_id`). */
  runId: string | null;
  credentialId: string | null;
  /** Reason code, e.g. `caep.session_revoked`, `operator`, `risc.credential_compromise`. */
  reason: string;
  severity: SignalSeverity;
  action: SignalAction;
  /** `operator:<admin id>`, `ssf:<receiver name>`, … */
  source: string;
  /** RFC 8417 §2.2 `txn`: carried from a received SET into every SET Mandate emits about it. */
  txn: string | null;
  /** When Mandate learned of it (the SET arrived, the operator called). */
  receivedAt: number;
  /** When this instance enforced it (time to revoke = appliedAt − receivedAt). */
  appliedAt: number | null;
  status: SignalStatus;
  error: string | null;
  /** Non-secret context: the SET's jti and event type, the unmapped subject, a fallback tier… */
  data: Record<string, unknown>;
}

/** What one instance did about one signal (time to revoke). Epoch ms. */
export interface SignalApplicationRecord {
  signalId: string;
  instanceId: string;
  role: string;
  /** When this instance's revocation state applied what the signal caused. */
  appliedAt: number | null;
  /** When this instance first refused a call because of it. */
  firstDeniedAt: number | null;
}

export type SsfStreamDirection = 'in' | 'out';
export type SsfStreamStatus = 'enabled' | 'paused' | 'disabled';

/** An SSF event stream: `out` = Mandate transmits to a receiver; `in` = a configured receiver's local state. */
export interface SsfStreamRecord {
  id: string;
  direction: SsfStreamDirection;
  /** Admin credential id that created it (`out`); null for `in`. */
  owner: string | null;
  /** SSF 1.0 stream configuration as Mandate keeps it (see ssf-stream-config.ts, StoredConfig). */
  config: Record<string, unknown>;
  status: SsfStreamStatus;
  statusReason: string | null;
  createdAt: number;
  updatedAt: number;
}

/**
 * An outbound stream's own credential (`mds.<stream id>.<secret>`): what its receiver presents to
 * poll and manage that stream and nothing else. Only sha256 of the secret is kept.
 */
export interface SsfStreamCredentialRecord {
  streamId: string;
  /** sha256 of the secret part, hex. */
  secretHash: string;
  createdAt: number;
}

export interface SsfSubjectRecord {
  streamId: string;
  /** Canonical JSON of the subject, the identity of a subject within a stream. */
  key: string;
  subject: Record<string, unknown>;
  /** The NHI the subject names, when it names one (opaque id = NHI id). */
  nhiId: string | null;
  createdAt: number;
}

/**
 * - `queued`: waiting (push: for an attempt at nextAttemptAt; poll: for a poll, not handed out
 *   again before nextAttemptAt);
 * - `delivered`: push answered 202 (RFC 8935 §2.2);
 * - `acked`: poll acknowledged (RFC 8936 §2.4);
 * - `error`: poll acknowledged with a setErrs entry (lastError);
 * - `dead`: push failed after the last attempt (the dead letter).
 */
export type SsfEventStatus = 'queued' | 'delivered' | 'acked' | 'error' | 'dead';

export interface SsfEventRecord {
  id: string;
  streamId: string;
  jti: string;
  setJwt: string;
  status: SsfEventStatus;
  attempts: number;
  nextAttemptAt: number | null;
  lastError: string | null;
  createdAt: number;
}

export interface SignalsStore {
  insertSignal(s: SignalRecord): Promise<void>;
  /** Many signals in multi-row INSERTs (a group commit). */
  insertSignals(s: readonly SignalRecord[]): Promise<void>;
  getSignal(id: string): Promise<SignalRecord | undefined>;
  /** The signals with these ids that exist (any order). */
  getSignals(ids: readonly string[]): Promise<SignalRecord[]>;
  /** Which of these NHI ids exist (one query for a batch of SETs' subjects). */
  knownNhiIds(ids: readonly string[]): Promise<Set<string>>;
  /** Newest first (receivedAt, then id). */
  listSignals(filter?: { nhiId?: string; since?: number; limit?: number }): Promise<SignalRecord[]>;
  /** Sets status, appliedAt and error. */
  updateSignalOutcome(id: string, o: { status: SignalStatus; appliedAt: number | null; error: string | null }): Promise<void>;

  /** Records that an instance applied a signal; the first time per (signal, instance) wins. */
  recordSignalApplied(a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void>;
  /** Records an instance's first denial caused by a signal; the first time per (signal, instance) wins. */
  recordSignalDenied(a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void>;
  /**
   * Both of the above for many rows at once (multi-row upsert), each time keeping the first one
   * recorded. Returns the arrival time (`receivedAt`) of those of the rows' signals that exist
   * (PostgreSQL: in the same statement).
   */
  recordSignalTimes(rows: readonly { signalId: string; instanceId: string; role: string; appliedAt: number | null; firstDeniedAt: number | null }[]): Promise<Map<string, number>>;
  listSignalApplications(signalIds: readonly string[]): Promise<SignalApplicationRecord[]>;

  createSsfStream(s: SsfStreamRecord): Promise<void>;
  getSsfStream(id: string): Promise<SsfStreamRecord | undefined>;
  /** Oldest first. */
  listSsfStreams(filter?: { direction?: SsfStreamDirection; owner?: string }): Promise<SsfStreamRecord[]>;
  /** Replaces config, status, statusReason and updatedAt; false when it does not exist. */
  updateSsfStream(s: SsfStreamRecord): Promise<boolean>;
  /** Deletes the stream with its subjects, events and credential; false when it did not exist. */
  deleteSsfStream(id: string): Promise<boolean>;
  /** Sets (or replaces: the previous one stops working) the stream's credential. */
  putSsfStreamCredential(c: SsfStreamCredentialRecord): Promise<void>;
  getSsfStreamCredential(streamId: string): Promise<SsfStreamCredentialRecord | undefined>;

  /** Idempotent: adding a subject already there changes nothing. */
  addSsfSubject(s: SsfSubjectRecord): Promise<void>;
  removeSsfSubject(streamId: string, key: string): Promise<boolean>;
  listSsfSubjects(streamId: string): Promise<SsfSubjectRecord[]>;

  /** Inserts unless (streamId, jti) exists; true when inserted (so several instances queue a SET once). */
  enqueueSsfEvent(e: SsfEventRecord): Promise<boolean>;
  getSsfEvent(id: string): Promise<SsfEventRecord | undefined>;
  /** Queued events due at `now` (nextAttemptAt null or <= now), oldest first; all streams when streamId is undefined. */
  dueSsfEvents(filter: { streamId?: string; now: number; limit: number }): Promise<SsfEventRecord[]>;
  /**
   * Atomically takes a queued event whose nextAttemptAt still equals `expectedNextAt`, moving it
   * to `leaseUntil`: of concurrent claimers (instances), exactly one gets true.
   */
  claimSsfEvent(id: string, expectedNextAt: number | null, leaseUntil: number): Promise<boolean>;
  updateSsfEvent(id: string, patch: { status: SsfEventStatus; attempts?: number; nextAttemptAt?: number | null; lastError?: string | null }): Promise<void>;
  /** Marks the stream's *queued* events with these jtis as acked (or error); returns how many changed. */
  settleSsfEvents(streamId: string, jtis: string[], outcome: { status: 'acked' | 'error'; lastError?: string | null }): Promise<number>;
  /** Newest first. */
  listSsfEvents(filter: { streamId?: string; status?: SsfEventStatus; limit?: number }): Promise<SsfEventRecord[]>;
}

/**
 * The plan of a group of received SETs (`SignalsBatchStore.recordSets`): what to check, and what
 * to write: the SETs' one-time records, and the signals and revocations each SET causes, written
 * only for the SETs whose record was inserted (not a replay). `of` is the index in `replay` of
 * the SET a row comes from.
 */
export interface SetBatchWrite {
  replay: readonly ReplayInsert[];
  signals: readonly { of: number; rec: SignalRecord }[];
  revocations: readonly { of: number; rec: RevocationRecord }[];
  /** Written only if every one of these NHI ids exists … */
  requireNhis?: readonly string[];
  /** … and none of these SSF streams exists with a status other than `enabled`. */
  requireStreamsEnabled?: readonly string[];
}

export interface SignalsBatchStore {
  /**
   * Checks and writes `w` atomically, in the fewest round trips the store can (one statement
   * where it can): the replay records decide, as `insertOnceMany` does (atomic across
   * instances), and a SET's rows are inserted only when its record was. Returns, per replay
   * record in order, whether it was inserted; undefined, having written nothing, when a
   * `require…` check failed. Any failure writes nothing. The keys of `w.replay` must be distinct.
   */
  recordSets(w: SetBatchWrite): Promise<boolean[] | undefined>;
}

/**
 * A SET signature check with node:crypto on a key from `SetKeySource` (app.ts injects the
 * broker's `verifyCompactAsync` path): true / false, or undefined when this key or algorithm is
 * not one it handles (the receiver then verifies with jose). The algorithm is the pinned one.
 */
export type SetSignatureCheck = (jwt: string, alg: string, key: unknown) => Promise<boolean> | undefined;

/** A verification key from a JWKS URL (app.ts injects the broker's guarded JwksFetcher). */
export interface SetKeySource {
  getKey(jwksUri: string, sel: { kid?: string | undefined; alg: string }): Promise<unknown>;
}

/**
 * The pre-verification JWS check (app.ts injects the broker's `assertJwsShape`): size cap,
 * pinned `alg` (never `none`), no duplicate JSON members, no `crit`. Throws an error with a
 * `reason` on refusal.
 */
export type JwsShapeCheck = (jwt: unknown, opts: { algorithms: readonly string[]; maxBytes?: number }) => {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
};
