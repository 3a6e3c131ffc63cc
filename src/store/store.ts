import { sql, type Kysely } from 'kysely';
import { UnavailableError } from '../core/errors.js';
import type { ReplayBatchStore, ReplayInsert, ReplayStore } from '../core/ports/replay.js';
import type { CredentialRecord, GrantRecord, InventoryStore, NhiFilter, NhiRecord, ToolRecord } from '../inventory/ports.js';
import type { AuditEvent, AuditFilter, AuditHead, AuditRecord, AuditStore } from '../audit/ports.js';
import type { KeyStore, SigningKeyRecord } from '../keys/ports.js';
import type { AdminCredentialRecord, AdminStore } from '../admin/ports.js';
import type { BrokerBatchStore, BrokerStore, IssuedTokenRecord } from '../broker/ports.js';
import type { ApprovalRecord, ApprovalStatus, EnforcementStore, KillSwitchRecord, RestrictionRecord, RevocationRecord } from '../enforcement/ports.js';
import type {
  SetBatchWrite, SignalApplicationRecord, SignalRecord, SignalStatus, SignalsBatchStore, SignalsStore, SsfEventRecord, SsfEventStatus, SsfStreamDirection, SsfStreamRecord,
  SsfStreamCredentialRecord, SsfSubjectRecord,
} from '../signals/ports.js';
import type {
  FindingFilter, FindingInput, FindingRecord, FindingStatus, FindingUpsertResult, GovernanceStore, MuteRecord, PlaybookActionRecord,
  ProgrammeSnapshotRecord, RiskScoreRecord,
} from '../governance/ports.js';
import type { Database } from './database.js';
import { assertRoot, guard, transaction, type StoreContext, type StoreDialect } from './context.js';
import * as migrate from './migrate.js';
import * as locks from './locks.js';
import * as inventory from './inventory.js';
import * as audit from './audit.js';
import * as keys from './keys.js';
import * as adminCredentials from './admin-credentials.js';
import * as issuedTokens from './issued-tokens.js';
import * as enforcement from './enforcement.js';
import * as signals from './signals.js';
import * as ssf from './ssf.js';
import * as governance from './governance.js';
import * as replay from './replay.js';
import * as setBatches from './set-batches.js';

/**
 * The one storage implementation behind every capability's port, over SQLite (one instance)
 * or PostgreSQL (several instances). Every method maps driver errors: unique violations to
 * ConflictError, foreign-key violations to NotFoundError, an unreachable or closed database
 * to UnavailableError.
 *
 * This class is the facade: each aggregate's queries are in a file of their own (inventory.ts,
 * audit.ts, enforcement.ts, …), functions over the StoreContext (context.ts) that a Store holds;
 * the dialects' set-up is in sqlite/ and postgres/, and openStore (open.ts) puts them together.
 */
export class Store implements InventoryStore, AuditStore, KeyStore, AdminStore, ReplayStore, ReplayBatchStore, BrokerStore, BrokerBatchStore, EnforcementStore, SignalsStore, SignalsBatchStore, GovernanceStore {
  readonly dialect: StoreDialect;
  /**
   * The query builder. Inside `transaction(fn)`, the Store handed to fn has the Kysely
   * Transaction here, so `tx.db` queries and `tx.upsertNhi(…)` share the transaction.
   */
  readonly db: Kysely<Database>;
  readonly #c: StoreContext;

  /** @internal Use openStore(). */
  constructor(c: StoreContext) {
    this.#c = c;
    this.db = c.db;
    this.dialect = c.shared.dialect;
  }

  // ---------------------------------------------------------------- lifecycle

  /** See migrate.ts. */
  migrate(): Promise<string[]> {
    return migrate.migrate(this.#c);
  }

  migrationStatus(): Promise<{ name: string; executedAt: Date | null }[]> {
    return migrate.migrationStatus(this.#c);
  }

  /** Resolves when the database answers; throws UnavailableError otherwise (and after close). */
  async ping(): Promise<void> {
    await guard(this.#c, { what: 'ping' }, async () => {
      await sql`select 1`.execute(this.db);
    }).catch((err: unknown) => {
      throw err instanceof UnavailableError ? err : new UnavailableError(`store unavailable (ping): ${String(err)}`, { cause: err });
    });
  }

  /** Closes the connections. Idempotent; afterwards every method throws UnavailableError. */
  async close(): Promise<void> {
    assertRoot(this.#c, 'close');
    const shared = this.#c.shared;
    if (shared.closed) return;
    shared.closed = true;
    await shared.release();
  }

  /**
   * Runs fn in one database transaction and hands it a Store bound to that transaction
   * (`tx.db` is the Kysely Transaction; port methods on `tx` run inside it). Commits when fn
   * resolves, rolls back when it throws. Called on a transaction-bound Store, it joins the
   * running transaction. Inside fn use only `tx`: on SQLite the single connection is held by
   * the transaction, so a query through the outer Store would wait forever.
   */
  async transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    return transaction(this.#c, (c) => fn(c === this.#c ? this : new Store(c)));
  }

  /** Runs fn while holding the lock `name` (see locks.ts). Not re-entrant. */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return locks.withLock(this.#c, name, fn);
  }

  // ---------------------------------------------------------------- inventory (inventory.ts)

  listNhis(filter?: NhiFilter): Promise<NhiRecord[]> {
    return inventory.listNhis(this.#c, filter);
  }
  getNhi(id: string): Promise<NhiRecord | undefined> {
    return inventory.getNhi(this.#c, id);
  }
  upsertNhi(nhi: NhiRecord): Promise<void> {
    return inventory.upsertNhi(this.#c, nhi);
  }
  listCredentials(nhiId?: string): Promise<CredentialRecord[]> {
    return inventory.listCredentials(this.#c, nhiId);
  }
  upsertCredential(cred: CredentialRecord): Promise<void> {
    return inventory.upsertCredential(this.#c, cred);
  }
  deleteCredential(id: string): Promise<boolean> {
    return inventory.deleteCredential(this.#c, id);
  }
  listGrants(filter?: { nhiId?: string; toolId?: string }): Promise<GrantRecord[]> {
    return inventory.listGrants(this.#c, filter);
  }
  getGrant(id: string): Promise<GrantRecord | undefined> {
    return inventory.getGrant(this.#c, id);
  }
  upsertGrant(grant: GrantRecord): Promise<void> {
    return inventory.upsertGrant(this.#c, grant);
  }
  deleteGrant(id: string): Promise<boolean> {
    return inventory.deleteGrant(this.#c, id);
  }
  touchGrant(id: string, at: number): Promise<void> {
    return inventory.touchGrant(this.#c, id, at);
  }
  listTools(): Promise<ToolRecord[]> {
    return inventory.listTools(this.#c);
  }
  getTool(id: string): Promise<ToolRecord | undefined> {
    return inventory.getTool(this.#c, id);
  }
  upsertTool(tool: ToolRecord): Promise<void> {
    return inventory.upsertTool(this.#c, tool);
  }
  deleteTool(id: string): Promise<boolean> {
    return inventory.deleteTool(this.#c, id);
  }

  // ---------------------------------------------------------------- audit (audit.ts)

  appendChained(events: AuditEvent[], chain: (prevHash: string, rec: Omit<AuditRecord, 'hash' | 'prevHash'>) => string): Promise<AuditRecord[]> {
    return audit.appendChained(this.#c, events, chain);
  }
  readAudit(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    return audit.readAudit(this.#c, fromSeq, limit);
  }
  auditHead(): Promise<AuditHead> {
    return audit.auditHead(this.#c);
  }
  queryAudit(filter: AuditFilter): Promise<AuditRecord[]> {
    return audit.queryAudit(this.#c, filter);
  }

  // ---------------------------------------------------------------- signing keys (keys.ts)

  listSigningKeys(): Promise<SigningKeyRecord[]> {
    return keys.listSigningKeys(this.#c);
  }
  insertSigningKey(key: SigningKeyRecord): Promise<void> {
    return keys.insertSigningKey(this.#c, key);
  }
  updateSigningKey(kid: string, patch: { retiresAt?: number | null; expiresAt?: number | null }): Promise<void> {
    return keys.updateSigningKey(this.#c, kid, patch);
  }
  deleteSigningKey(kid: string): Promise<void> {
    return keys.deleteSigningKey(this.#c, kid);
  }

  // ---------------------------------------------------------------- admin credentials (admin-credentials.ts)

  countAdminCredentials(): Promise<number> {
    return adminCredentials.countAdminCredentials(this.#c);
  }
  insertAdminCredential(rec: AdminCredentialRecord): Promise<void> {
    return adminCredentials.insertAdminCredential(this.#c, rec);
  }
  getAdminCredential(id: string): Promise<AdminCredentialRecord | undefined> {
    return adminCredentials.getAdminCredential(this.#c, id);
  }
  listAdminCredentials(): Promise<AdminCredentialRecord[]> {
    return adminCredentials.listAdminCredentials(this.#c);
  }
  touchAdminCredential(id: string, at: number): Promise<void> {
    return adminCredentials.touchAdminCredential(this.#c, id, at);
  }
  revokeAdminCredential(id: string, at: number): Promise<boolean> {
    return adminCredentials.revokeAdminCredential(this.#c, id, at);
  }
  setAdminCredentialExpiry(id: string, expiresAt: number): Promise<boolean> {
    return adminCredentials.setAdminCredentialExpiry(this.#c, id, expiresAt);
  }

  // ---------------------------------------------------------------- issued tokens (issued-tokens.ts)

  recordIssuedToken(t: IssuedTokenRecord): Promise<void> {
    return issuedTokens.recordIssuedToken(this.#c, t);
  }
  recordIssuedTokens(tokens: readonly IssuedTokenRecord[]): Promise<void> {
    return issuedTokens.recordIssuedTokens(this.#c, tokens);
  }
  getIssuedToken(jti: string): Promise<IssuedTokenRecord | undefined> {
    return issuedTokens.getIssuedToken(this.#c, jti);
  }
  listIssuedTokens(filter: { nhiId?: string; audience?: string; activeAt?: number; limit?: number }): Promise<IssuedTokenRecord[]> {
    return issuedTokens.listIssuedTokens(this.#c, filter);
  }

  // ---------------------------------------------------------------- revocations, kill switches, approvals, restrictions (enforcement.ts)

  addRevocation(r: RevocationRecord): Promise<void> {
    return enforcement.addRevocation(this.#c, r);
  }
  addRevocations(records: readonly RevocationRecord[]): Promise<void> {
    return enforcement.addRevocations(this.#c, records);
  }
  listRevocations(now: number, opts?: { createdSince?: number }): Promise<RevocationRecord[]> {
    return enforcement.listRevocations(this.#c, now, opts);
  }
  purgeRevocations(now: number): Promise<number> {
    return enforcement.purgeRevocations(this.#c, now);
  }
  addKillSwitch(k: KillSwitchRecord): Promise<void> {
    return enforcement.addKillSwitch(this.#c, k);
  }
  liftKillSwitch(id: string, liftedBy: string, at: number): Promise<boolean> {
    return enforcement.liftKillSwitch(this.#c, id, liftedBy, at);
  }
  listKillSwitches(opts?: { activeOnly?: boolean }): Promise<KillSwitchRecord[]> {
    return enforcement.listKillSwitches(this.#c, opts);
  }
  createApproval(a: ApprovalRecord): Promise<void> {
    return enforcement.createApproval(this.#c, a);
  }
  getApproval(id: string): Promise<ApprovalRecord | undefined> {
    return enforcement.getApproval(this.#c, id);
  }
  listApprovals(filter?: { status?: ApprovalStatus; nhiId?: string; limit?: number }): Promise<ApprovalRecord[]> {
    return enforcement.listApprovals(this.#c, filter);
  }
  findApprovals(key: { nhiId: string; toolId: string; action: string; argsDigest: string }, at: number): Promise<ApprovalRecord[]> {
    return enforcement.findApprovals(this.#c, key, at);
  }
  decideApproval(id: string, d: { status: 'approved' | 'denied'; decidedBy: string; decidedAt: number; reason: string | null }): Promise<ApprovalRecord | undefined> {
    return enforcement.decideApproval(this.#c, id, d);
  }
  redeemApproval(id: string, at: number): Promise<boolean> {
    return enforcement.redeemApproval(this.#c, id, at);
  }
  addRestriction(r: RestrictionRecord): Promise<void> {
    return enforcement.addRestriction(this.#c, r);
  }
  liftRestrictions(nhiId: string, liftedBy: string, at: number): Promise<RestrictionRecord[]> {
    return enforcement.liftRestrictions(this.#c, nhiId, liftedBy, at);
  }
  listRestrictions(opts?: { activeOnly?: boolean; nhiId?: string }): Promise<RestrictionRecord[]> {
    return enforcement.listRestrictions(this.#c, opts);
  }

  // ---------------------------------------------------------------- signals (signals.ts)

  insertSignal(sig: SignalRecord): Promise<void> {
    return signals.insertSignal(this.#c, sig);
  }
  insertSignals(sigs: readonly SignalRecord[]): Promise<void> {
    return signals.insertSignals(this.#c, sigs);
  }
  getSignals(ids: readonly string[]): Promise<SignalRecord[]> {
    return signals.getSignals(this.#c, ids);
  }
  knownNhiIds(ids: readonly string[]): Promise<Set<string>> {
    return signals.knownNhiIds(this.#c, ids);
  }
  getSignal(id: string): Promise<SignalRecord | undefined> {
    return signals.getSignal(this.#c, id);
  }
  listSignals(filter?: { nhiId?: string; since?: number; limit?: number }): Promise<SignalRecord[]> {
    return signals.listSignals(this.#c, filter);
  }
  updateSignalOutcome(id: string, o: { status: SignalStatus; appliedAt: number | null; error: string | null }): Promise<void> {
    return signals.updateSignalOutcome(this.#c, id, o);
  }
  recordSignalApplied(a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void> {
    return signals.recordSignalApplied(this.#c, a);
  }
  recordSignalDenied(a: { signalId: string; instanceId: string; role: string; at: number }): Promise<void> {
    return signals.recordSignalDenied(this.#c, a);
  }
  recordSignalTimes(rows: readonly { signalId: string; instanceId: string; role: string; appliedAt: number | null; firstDeniedAt: number | null }[]): Promise<Map<string, number>> {
    return signals.recordSignalTimes(this.#c, rows);
  }
  listSignalApplications(signalIds: readonly string[]): Promise<SignalApplicationRecord[]> {
    return signals.listSignalApplications(this.#c, signalIds);
  }

  // ---------------------------------------------------------------- SSF streams, subjects, events (ssf.ts)

  createSsfStream(st: SsfStreamRecord): Promise<void> {
    return ssf.createSsfStream(this.#c, st);
  }
  getSsfStream(id: string): Promise<SsfStreamRecord | undefined> {
    return ssf.getSsfStream(this.#c, id);
  }
  listSsfStreams(filter?: { direction?: SsfStreamDirection; owner?: string }): Promise<SsfStreamRecord[]> {
    return ssf.listSsfStreams(this.#c, filter);
  }
  updateSsfStream(st: SsfStreamRecord): Promise<boolean> {
    return ssf.updateSsfStream(this.#c, st);
  }
  deleteSsfStream(id: string): Promise<boolean> {
    return ssf.deleteSsfStream(this.#c, id);
  }
  putSsfStreamCredential(cred: SsfStreamCredentialRecord): Promise<void> {
    return ssf.putSsfStreamCredential(this.#c, cred);
  }
  getSsfStreamCredential(streamId: string): Promise<SsfStreamCredentialRecord | undefined> {
    return ssf.getSsfStreamCredential(this.#c, streamId);
  }
  addSsfSubject(sub: SsfSubjectRecord): Promise<void> {
    return ssf.addSsfSubject(this.#c, sub);
  }
  removeSsfSubject(streamId: string, key: string): Promise<boolean> {
    return ssf.removeSsfSubject(this.#c, streamId, key);
  }
  listSsfSubjects(streamId: string): Promise<SsfSubjectRecord[]> {
    return ssf.listSsfSubjects(this.#c, streamId);
  }
  enqueueSsfEvent(e: SsfEventRecord): Promise<boolean> {
    return ssf.enqueueSsfEvent(this.#c, e);
  }
  getSsfEvent(id: string): Promise<SsfEventRecord | undefined> {
    return ssf.getSsfEvent(this.#c, id);
  }
  dueSsfEvents(filter: { streamId?: string; now: number; limit: number }): Promise<SsfEventRecord[]> {
    return ssf.dueSsfEvents(this.#c, filter);
  }
  claimSsfEvent(id: string, expectedNextAt: number | null, leaseUntil: number): Promise<boolean> {
    return ssf.claimSsfEvent(this.#c, id, expectedNextAt, leaseUntil);
  }
  updateSsfEvent(id: string, patch: { status: SsfEventStatus; attempts?: number; nextAttemptAt?: number | null; lastError?: string | null }): Promise<void> {
    return ssf.updateSsfEvent(this.#c, id, patch);
  }
  settleSsfEvents(streamId: string, jtis: string[], outcome: { status: 'acked' | 'error'; lastError?: string | null }): Promise<number> {
    return ssf.settleSsfEvents(this.#c, streamId, jtis, outcome);
  }
  listSsfEvents(filter: { streamId?: string; status?: SsfEventStatus; limit?: number }): Promise<SsfEventRecord[]> {
    return ssf.listSsfEvents(this.#c, filter);
  }

  // ---------------------------------------------------------------- governance (governance.ts)

  upsertFinding(f: FindingInput, id: string): Promise<FindingUpsertResult> {
    return governance.upsertFinding(this.#c, f, id);
  }
  getFinding(id: string): Promise<FindingRecord | undefined> {
    return governance.getFinding(this.#c, id);
  }
  listFindings(filter?: FindingFilter): Promise<FindingRecord[]> {
    return governance.listFindings(this.#c, filter);
  }
  setFindingStatus(id: string, status: FindingStatus, by: string, at: number, note: string | null): Promise<FindingRecord | undefined> {
    return governance.setFindingStatus(this.#c, id, status, by, at, note);
  }
  addMute(m: MuteRecord): Promise<void> {
    return governance.addMute(this.#c, m);
  }
  listMutes(filter?: { nhiId?: string; activeAt?: number }): Promise<MuteRecord[]> {
    return governance.listMutes(this.#c, filter);
  }
  deleteMute(id: string): Promise<boolean> {
    return governance.deleteMute(this.#c, id);
  }
  claimPlaybookAction(a: PlaybookActionRecord): Promise<boolean> {
    return governance.claimPlaybookAction(this.#c, a);
  }
  setPlaybookActionSignal(id: string, signalId: string | null): Promise<void> {
    return governance.setPlaybookActionSignal(this.#c, id, signalId);
  }
  getPlaybookAction(id: string): Promise<PlaybookActionRecord | undefined> {
    return governance.getPlaybookAction(this.#c, id);
  }
  listPlaybookActions(filter?: { nhiId?: string; limit?: number }): Promise<PlaybookActionRecord[]> {
    return governance.listPlaybookActions(this.#c, filter);
  }
  markPlaybookActionUndone(id: string, by: string, at: number): Promise<PlaybookActionRecord | undefined> {
    return governance.markPlaybookActionUndone(this.#c, id, by, at);
  }
  putProgrammeSnapshot(snap: ProgrammeSnapshotRecord): Promise<void> {
    return governance.putProgrammeSnapshot(this.#c, snap);
  }
  listProgrammeSnapshots(sinceDay?: string): Promise<ProgrammeSnapshotRecord[]> {
    return governance.listProgrammeSnapshots(this.#c, sinceDay);
  }
  putRiskScores(rows: readonly RiskScoreRecord[]): Promise<void> {
    return governance.putRiskScores(this.#c, rows);
  }
  listRiskScores(): Promise<RiskScoreRecord[]> {
    return governance.listRiskScores(this.#c);
  }
  issuanceByHour(since: number): Promise<Array<{ nhiId: string; hour: number; count: number }>> {
    return governance.issuanceByHour(this.#c, since);
  }
  denialsByNhi(since: number): Promise<Map<string, number>> {
    return governance.denialsByNhi(this.#c, since);
  }

  // ---------------------------------------------------------------- one-time records (replay.ts)

  insertOnce(scope: string, key: string, expiresAt: number): Promise<boolean> {
    return replay.insertOnce(this.#c, scope, key, expiresAt);
  }
  insertOnceMany(records: readonly ReplayInsert[]): Promise<boolean[]> {
    return replay.insertOnceMany(this.#c, records);
  }
  purgeExpired(now: number): Promise<number> {
    return replay.purgeExpired(this.#c, now);
  }

  // ---------------------------------------------------------------- SET batches (set-batches.ts)

  /**
   * Writes a batch of received SETs as the store can do it atomically: on PostgreSQL one
   * statement (recordSetsOnce), on SQLite one transaction of the same checks and writes.
   */
  async recordSets(w: SetBatchWrite): Promise<boolean[] | undefined> {
    if (w.replay.length === 0) return [];
    if (this.dialect === 'postgres') return this.recordSetsOnce(w);
    return this.transaction((tx) => setBatches.recordSetsInTransaction(tx.#c, w));
  }

  recordSetsOnce(w: SetBatchWrite): Promise<boolean[] | undefined> {
    return setBatches.recordSetsOnce(this.#c, w);
  }
}
