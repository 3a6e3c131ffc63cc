import { newId, type AuditSink, type Bus, type Clock, type Logger } from '../core/index.js';
import type { BrokerStore } from '../broker/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type { RestrictionRecord, SignalAction, SignalRecord, SignalSeverity, SignalsStore } from './ports.js';
import { RESTRICTION_SUBJECTS } from './restriction-state.js';

/** Bus subject of a new signal (payload: the SignalRecord). */
export const SIGNAL_RAISED = 'signal.raised';

/** The part of the broker's public API that enforces signals (src/broker/index.ts, Broker). */
export interface SignalEnforcer {
  revokeToken(jti: string, expiresAt: number | null, reason: string, actor: string, signalId?: string | null): Promise<void>;
  revokeAll(kind: 'nhi', target: string, reason: string, actor: string, signalId?: string | null): Promise<unknown>;
  kill(scope: 'nhi', target: string, reason: string, actor: string): Promise<unknown>;
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
  store: SignalsStore & Pick<BrokerStore, 'getIssuedToken'> & Pick<InventoryStore, 'getNhi'>;
  broker: SignalEnforcer;
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
 * The internal signal (issue 5, item 1): one schema for every source. `raise` stores it, audits
 * it, publishes `signal.raised`, and enforces it through the broker's public API only:
 * revoke_tokens → revokeToken (a jti) or revokeAll('nhi'); disable / block → kill('nhi');
 * step_down / step_up → a restriction record (restriction.added) that RestrictionState serves.
 */
export class Signals {
  constructor(private readonly d: SignalsDeps) {}

  async raise(input: SignalInput): Promise<SignalRecord> {
    const now = this.d.clock.now();
    let nhiId = input.nhiId ?? null;
    // A token subject names its NHI through the issued-token record.
    if (!nhiId && input.jti) nhiId = (await this.d.store.getIssuedToken(input.jti))?.nhiId ?? null;
    const fallbackTier = input.fallbackTier ?? this.d.defaultFallbackTier;
    const rec: SignalRecord = {
      id: newId('sig'), nhiId, jti: input.jti ?? null, runId: input.runId ?? null, credentialId: input.credentialId ?? null,
      reason: input.reason, severity: input.severity, action: input.action, source: input.source, txn: input.txn ?? null,
      receivedAt: input.receivedAt ?? now, appliedAt: null, status: input.recordOnly ?? 'recorded', error: null,
      data: { ...(input.data ?? {}), ...(input.action === 'step_down' || input.action === 'step_up' ? { fallback_tier: fallbackTier } : {}) },
    };
    await this.d.store.insertSignal(rec);
    this.d.audit.record({
      type: 'signal.raised', actor: input.source, subject: nhiId, decision: input.action,
      data: { signal_id: rec.id, reason: rec.reason, severity: rec.severity, jti: rec.jti, run_id: rec.runId, txn: rec.txn, status: rec.status },
    });
    // Not awaited: enforcement (the store, then the revocation's own publish) must not wait for
    // the bus; a NATS outage would otherwise hold every signal until it ends.
    void this.d.bus.publish(SIGNAL_RAISED, rec, { id: rec.id }).catch((err: unknown) => this.d.logger.warn({ err }, 'signal not published'));
    if (input.recordOnly) return rec;

    try {
      await this.enforce(rec, fallbackTier);
      rec.appliedAt = this.d.clock.now();
      rec.status = 'applied';
      this.d.onApplied?.((rec.appliedAt - rec.receivedAt) / 1000, rec.action);
    } catch (err) {
      rec.status = 'failed';
      rec.error = err instanceof Error ? err.message.slice(0, 500) : 'enforcement failed';
      this.d.logger.error({ err, signal_id: rec.id }, 'signal enforcement failed');
    }
    await this.d.store.updateSignalOutcome(rec.id, { status: rec.status, appliedAt: rec.appliedAt, error: rec.error });
    this.d.audit.record({
      type: rec.status === 'applied' ? 'signal.applied' : 'signal.failed', actor: input.source, subject: nhiId, decision: rec.action,
      data: { signal_id: rec.id, applied_at: rec.appliedAt, error: rec.error, time_to_apply_ms: rec.appliedAt === null ? null : rec.appliedAt - rec.receivedAt },
    });
    return rec;
  }

  private async enforce(s: SignalRecord, fallbackTier: string): Promise<void> {
    const actor = `signal:${s.id}`;
    const reason = `${s.reason} (signal ${s.id} from ${s.source})`;
    switch (s.action) {
      case 'revoke_tokens':
        if (s.jti) return this.d.broker.revokeToken(s.jti, null, reason, actor, s.id);
        if (s.nhiId) {
          await this.d.broker.revokeAll('nhi', s.nhiId, reason, actor, s.id);
          return;
        }
        throw new Error('revoke_tokens needs an NHI or a token jti');
      case 'disable':
      case 'block':
        if (!s.nhiId) throw new Error(`${s.action} needs an NHI (or a token jti of a known token)`);
        await this.d.broker.kill('nhi', s.nhiId, `[signal ${s.id}] ${s.reason}`, actor);
        return;
      case 'step_down':
      case 'step_up': {
        if (!s.nhiId) throw new Error(`${s.action} needs an NHI (or a token jti of a known token)`);
        const r: RestrictionRecord = {
          id: newId('rst'), nhiId: s.nhiId, kind: s.action, fallbackTier, signalId: s.id, reason: s.reason,
          createdAt: this.d.clock.now(), liftedAt: null, liftedBy: null,
        };
        await this.d.store.addRestriction(r);
        this.d.audit.record({ type: 'restriction.added', actor, subject: s.nhiId, decision: s.action, data: { restriction_id: r.id, fallback_tier: fallbackTier, signal_id: s.id } });
        await this.d.bus.publish(RESTRICTION_SUBJECTS.added, r, { id: r.id }).catch((err: unknown) => this.d.logger.warn({ err }, 'restriction not published'));
        return;
      }
    }
  }

  /** An operator lifts an NHI's step-down / step-up. Returns the lifted records (empty: none was active). */
  async lift(nhiId: string, actor: string): Promise<RestrictionRecord[]> {
    const lifted = await this.d.store.liftRestrictions(nhiId, actor, this.d.clock.now());
    for (const r of lifted) {
      this.d.audit.record({ type: 'restriction.lifted', actor, subject: nhiId, data: { restriction_id: r.id, kind: r.kind, signal_id: r.signalId } });
      await this.d.bus.publish(RESTRICTION_SUBJECTS.lifted, r, { id: `${r.id}:lifted` }).catch((err: unknown) => this.d.logger.warn({ err }, 'restriction lift not published'));
    }
    return lifted;
  }
}
