import { newId, type AuditSink, type Bus, type Clock, type Logger } from '../core/index.js';
import { RESTRICTION_SUBJECTS, type EnforcementOp, type EnforcementStore, type IssuedTokenLookup, type RestrictionRecord, type StagingStore } from '../enforcement/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type { SignalAction, SignalRecord, SignalSeverity, SignalsStore } from './ports.js';

/** Bus subject of a new signal (payload: the SignalRecord). */
export const SIGNAL_RAISED = 'signal.raised';

/** The part of enforcement's public API that enforces signals (src/enforcement/index.ts, Enforcement). */
export interface SignalEnforcer {
  /**
   * Writes revocations / kill switches through the caller's transaction; `commit()` after it
   * committed applies, audits and publishes them (with `keep`: only those of these signals).
   */
  stage(store: StagingStore, ops: readonly EnforcementOp[]): Promise<{ commit: (keep?: ReadonlySet<string>) => Promise<void> }>;
}

/** What one group commit of signals writes, through a transaction-bound store. */
export type SignalsTxStore = Pick<SignalsStore, 'insertSignals'> & Pick<EnforcementStore, 'addRestriction'> & StagingStore;

/** Signals staged in a transaction: `commit()` once it has committed. */
export interface StagedSignals {
  records: SignalRecord[];
  /**
   * Applies in this instance, audits and publishes; resolves when the publishes settled (the
   * caller need not wait). `keep`: only the signals with these ids (and what they cause) were
   * written (the others' SETs were replays, see the receiver's one-statement commit).
   */
  commit(keep?: ReadonlySet<string>): Promise<void>;
}

export interface SignalInput {
  nhiId?: string | null;
  jti?: string | null;
  runId?: string | null;
  credentialId?: string | null;
  reason: string;
  severity: SignalSeverity;
  action: SignalAction;
  source: string;
  txn?: string | null;
  /** Default: now. A SET's arrival time when the signal comes from a receiver. */
  receivedAt?: number;
  /** For step_down / step_up; default: signals.fallback_tier or the least dangerous profile. */
  fallbackTier?: string;
  data?: Record<string, unknown>;
  /** Record only (e.g. a SET whose subject maps to no NHI): nothing is enforced. */
  recordOnly?: 'unmapped' | 'ignored';
}

export interface SignalsDeps {
  store: SignalsStore & IssuedTokenLookup & Pick<EnforcementStore, 'liftRestrictions'> & Pick<InventoryStore, 'getNhi'> & {
    transaction<T>(fn: (tx: SignalsTxStore) => Promise<T>): Promise<T>;
  };
  enforcement: SignalEnforcer;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  defaultFallbackTier: string;
  /** Seconds from receivedAt to appliedAt, for the `mandate_signal_apply_seconds` histogram. */
  onApplied?: (seconds: number, action: SignalAction) => void;
}

/** The prefix that ties a kill switch to the signal that engaged it (kill records have no signal id). */
export const KILL_REASON_PREFIX = /^\[signal ([A-Za-z0-9_-]+)\] /;

/**
 * The internal signal: one schema for every source. `raise` stores it, audits
 * it, publishes `signal.raised`, and enforces it through enforcement's public API only:
 * revoke_tokens → revokeToken (a jti) or revokeAll('nhi'); disable / block → kill('nhi');
 * step_down / step_up → a restriction record (restriction.added) that RestrictionState serves.
 */
export class Signals {
  constructor(private readonly d: SignalsDeps) {}

  /** One signal: stored and enforced in one transaction, then audited and published. */
  async raise(input: SignalInput): Promise<SignalRecord> {
    return (await this.raiseMany([input]))[0]!;
  }

  /** Many signals in one transaction (group commit); see `stage`. */
  async raiseMany(inputs: readonly SignalInput[]): Promise<SignalRecord[]> {
    const staged = await this.d.store.transaction((tx) => this.stage(tx, inputs));
    // Not awaited: enforcement is in the store and in this instance; the bus is the fast path
    // to the others, and a NATS outage must not hold the caller (publishes wait up to 30 s).
    staged.commit().catch((err: unknown) => this.d.logger.error({ err }, 'signal commit step failed'));
    return staged.records;
  }

  /**
   * Writes the signals and what they cause through `tx` (the caller's transaction, which may
   * hold other writes of the same batch, e.g. the receiver's replay records): one multi-row
   * INSERT of the signal records, enforcement's revocations and kill switches (its `stage`),
   * restrictions. A signal that cannot be enforced (no subject for its action) is recorded as
   * `failed` with the reason; a database error fails the whole transaction, so the caller
   * learns that nothing was recorded (fail closed, nothing half-done). `commit()` after the
   * transaction committed: applies in this instance, audits, publishes.
   */
  async stage(tx: SignalsTxStore, inputs: readonly SignalInput[]): Promise<StagedSignals> {
    const now = this.d.clock.now();
    const records: SignalRecord[] = [];
    const ops: EnforcementOp[] = [];
    const restrictions: RestrictionRecord[] = [];
    for (const input of inputs) {
      let nhiId = input.nhiId ?? null;
      // A token subject names its NHI through the issued-token record.
      if (!nhiId && input.jti) nhiId = (await tx.getIssuedToken(input.jti))?.nhiId ?? null;
      const fallbackTier = input.fallbackTier ?? this.d.defaultFallbackTier;
      const rec: SignalRecord = {
        id: newId('sig'), nhiId, jti: input.jti ?? null, runId: input.runId ?? null, credentialId: input.credentialId ?? null,
        reason: input.reason, severity: input.severity, action: input.action, source: input.source, txn: input.txn ?? null,
        receivedAt: input.receivedAt ?? now, appliedAt: null, status: input.recordOnly ?? 'recorded', error: null,
        data: { ...(input.data ?? {}), ...(input.action === 'step_down' || input.action === 'step_up' ? { fallback_tier: fallbackTier } : {}) },
      };
      records.push(rec);
      if (input.recordOnly) continue;
      const problem = this.plan(rec, fallbackTier, ops, restrictions);
      if (problem) {
        rec.status = 'failed';
        rec.error = problem;
      } else {
        // Enforced when the transaction commits (and in this instance right after).
        rec.status = 'applied';
        rec.appliedAt = now;
      }
    }
    await tx.insertSignals(records);
    const staged = ops.length ? await this.d.enforcement.stage(tx, ops) : undefined;
    for (const r of restrictions) await tx.addRestriction(r);

    const commit = async (keep?: ReadonlySet<string>): Promise<void> => {
      const recs = keep ? records.filter((r) => keep.has(r.id)) : records;
      // Enforcement first (this instance's state, then the bus): the other instances wait on it.
      const sends: Promise<unknown>[] = staged ? [staged.commit(keep)] : [];
      for (const r of restrictions) {
        if (keep && !keep.has(r.signalId)) continue;
        this.d.audit.record({ type: 'restriction.added', actor: `signal:${r.signalId}`, subject: r.nhiId, decision: r.kind, data: { restriction_id: r.id, fallback_tier: r.fallbackTier, signal_id: r.signalId } });
        sends.push(this.d.bus.publish(RESTRICTION_SUBJECTS.added, r, { id: r.id }).catch((err: unknown) => this.d.logger.warn({ err }, 'restriction not published')));
      }
      for (const rec of recs) {
        if (rec.status === 'failed') this.d.logger.error({ signal_id: rec.id, error: rec.error }, 'signal enforcement failed');
        if (rec.status === 'applied') this.d.onApplied?.((rec.appliedAt! - rec.receivedAt) / 1000, rec.action);
        // ONE audit record per signal, its outcome: `signal.applied` / `signal.failed`, or
        // `signal.raised` when it is recorded only (unmapped, ignored). It carries what was
        // raised (reason, severity, subject, txn) and how it ended; what enforcement enforced has
        // its own record (`tokens.revoked`, `token.revoked`, `kill.engaged`), and a restriction
        // `restriction.added`.
        const type = rec.status === 'applied' ? 'signal.applied' : rec.status === 'failed' ? 'signal.failed' : 'signal.raised';
        this.d.audit.record({
          type, actor: rec.source, subject: rec.nhiId, decision: rec.action,
          data: {
            signal_id: rec.id, reason: rec.reason, severity: rec.severity, jti: rec.jti, run_id: rec.runId, txn: rec.txn, status: rec.status,
            received_at: rec.receivedAt, applied_at: rec.appliedAt, error: rec.error, time_to_apply_ms: rec.appliedAt === null ? null : rec.appliedAt - rec.receivedAt,
          },
        });
      }
      // Every signal on the bus, the batch's in one entry (see Bus.publishMany).
      sends.push(this.d.bus.publishMany(SIGNAL_RAISED, recs.map((rec) => ({ data: rec, id: rec.id }))).catch((err: unknown) => this.d.logger.warn({ err }, 'signals not published')));
      await Promise.all(sends);
    };
    return { records, commit };
  }

  /** What enforcing `s` takes (revocations and kill switches, a restriction); a reason when it cannot be enforced. */
  private plan(s: SignalRecord, fallbackTier: string, ops: EnforcementOp[], restrictions: RestrictionRecord[]): string | undefined {
    const actor = `signal:${s.id}`;
    const reason = `${s.reason} (signal ${s.id} from ${s.source})`;
    switch (s.action) {
      case 'revoke_tokens':
        if (s.jti) ops.push({ op: 'revoke_token', jti: s.jti, reason, actor, signalId: s.id });
        else if (s.nhiId) ops.push({ op: 'revoke_all', kind: 'nhi', target: s.nhiId, reason, actor, signalId: s.id });
        else return 'revoke_tokens needs an NHI or a token jti';
        return undefined;
      case 'disable':
      case 'block':
        if (!s.nhiId) return `${s.action} needs an NHI (or a token jti of a known token)`;
        ops.push({ op: 'kill', scope: 'nhi', target: s.nhiId, reason: `[signal ${s.id}] ${s.reason}`, actor });
        return undefined;
      case 'step_down':
      case 'step_up':
        if (!s.nhiId) return `${s.action} needs an NHI (or a token jti of a known token)`;
        // Two restrictions of one NHI in one batch: the later supersedes the earlier (addRestriction, in order).
        restrictions.push({
          id: newId('rst'), nhiId: s.nhiId, kind: s.action, fallbackTier, signalId: s.id, reason: s.reason,
          createdAt: this.d.clock.now(), liftedAt: null, liftedBy: null,
        });
        return undefined;
    }
  }

  /** An operator lifts an NHI's step-down / step-up. Returns the lifted records (empty: none was active). */
  async lift(nhiId: string, actor: string): Promise<RestrictionRecord[]> {
    const lifted = await this.d.store.liftRestrictions(nhiId, actor, this.d.clock.now());
    for (const r of lifted) {
      this.d.audit.record({ type: 'restriction.lifted', actor, subject: nhiId, data: { restriction_id: r.id, kind: r.kind, signal_id: r.signalId } });
      // Not awaited: the lift is answered once durable, whatever the bus (the others reload it from the store).
      void this.d.bus.publish(RESTRICTION_SUBJECTS.lifted, r, { id: `${r.id}:lifted` }).catch((err: unknown) => this.d.logger.warn({ err }, 'restriction lift not published'));
    }
    return lifted;
  }
}
