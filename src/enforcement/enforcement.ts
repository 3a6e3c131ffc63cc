import { newId, type AuditSink, type Bus, type Clock, type Logger } from '../core/index.js';
import type { EnforcementStore, IssuedTokenFacts, IssuedTokenLookup, KillSwitchRecord, RevocationRecord } from './ports.js';
import { KILL_SIGNAL_PREFIX, RevocationState } from './revocation-state.js';

/** One revocation or kill switch of a batch (`Enforcement.stage`): what `revokeToken`, `revokeAll('nhi')` and `kill('nhi')` do one at a time. */
export type EnforcementOp =
  | { op: 'revoke_token'; jti: string; reason: string; actor: string; signalId: string | null }
  | { op: 'revoke_all'; kind: 'nhi'; target: string; reason: string; actor: string; signalId: string | null }
  | { op: 'kill'; scope: 'nhi'; target: string; reason: string; actor: string };

/** The writes `Enforcement.stage` makes: the caller's transaction-bound store. */
export type StagingStore = Pick<EnforcementStore, 'addRevocations' | 'addKillSwitch'> & IssuedTokenLookup;

export interface EnforcementDeps {
  store: EnforcementStore & IssuedTokenLookup;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  /** `proxy.clock_skew`: a token is accepted this long past its `exp`, so its revocation is kept as long. */
  clockSkewS: number;
  /** `tokens.max_ttl`: no token issued before a revocation of everything outlives it by more. */
  maxTokenTtlS: number;
  /** Time to revoke: this instance applied a revocation or kill switch a signal caused. */
  onSignalApplied?: (signalId: string, at: number) => void;
}

/**
 * Revocation and kill switches: an operator's, a signal's or a playbook's decision written to the
 * store (the truth), applied to this instance's `RevocationState` at once, audited, and published
 * on the bus so that every other instance applies it within milliseconds (or at its next reload).
 * The broker refuses issuance and the proxy refuses calls by asking `revocations`.
 */
export class Enforcement {
  readonly revocations: RevocationState;
  /** Issued tokens not yet written to the store (the broker's batch), so a revocation finds their expiry at once. */
  private pending: ((jti: string) => IssuedTokenFacts | undefined) | undefined;

  constructor(private readonly d: EnforcementDeps) {
    this.revocations = new RevocationState({ store: d.store, bus: d.bus, clock: d.clock, logger: d.logger, onSignalApplied: d.onSignalApplied });
  }

  /** The broker's tokens issued but not yet recorded (it records them in batches). */
  readPendingTokens(lookup: (jti: string) => IssuedTokenFacts | undefined): void {
    this.pending = lookup;
  }

  start(): Promise<void> {
    return this.revocations.start();
  }

  stop(): Promise<void> {
    return this.revocations.stop();
  }

  async revokeToken(jti: string, expiresAt: number | null, reason: string, actor: string, signalId: string | null = null): Promise<void> {
    const tok = expiresAt === null ? this.pending?.(jti) ?? await this.d.store.getIssuedToken(jti) : undefined;
    const rec = { id: newId('rev'), kind: 'token' as const, target: jti, notBefore: null, reason, signalId, createdAt: this.d.clock.now(), expiresAt: this.keptUntil(expiresAt ?? tok?.expiresAt ?? null) };
    await this.d.store.addRevocation(rec);
    this.revocations.applyRevocation(rec);
    this.d.audit.record({ type: 'token.revoked', actor, subject: tok?.nhiId ?? null, data: { jti, reason } });
    this.propagate('revocation.added', rec, 'revocation not published');
  }

  /**
   * How long a token's revocation is kept: a token is still accepted up to `proxy.clock_skew`
   * after its `exp` (RFC 7519 §4.1.4 leeway), so its revocation (which also covers every token
   * exchanged from it, none of which outlives it) is kept that long and a minute more, as
   * `revokeAll`'s. Null (the token's expiry is unknown) keeps it until the store purges it.
   */
  private keptUntil(expiresAt: number | null): number | null {
    return expiresAt === null ? null : expiresAt + this.d.clockSkewS * 1000 + 60_000;
  }

  /** Every token of an NHI (or tool, or everything) issued up to now stops working. */
  async revokeAll(kind: 'nhi' | 'tool' | 'global' | 'key', target: string | null, reason: string, actor: string, signalId: string | null = null) {
    const now = this.d.clock.now();
    const rec = { id: newId('rev'), kind, target, notBefore: now, reason, signalId, createdAt: now, expiresAt: now + this.d.maxTokenTtlS * 1000 + 60_000 };
    await this.d.store.addRevocation(rec);
    this.revocations.applyRevocation(rec);
    this.d.audit.record({ type: 'tokens.revoked', actor, subject: kind === 'nhi' ? target : null, tool: kind === 'tool' ? target : null, data: { kind, reason, ...(kind === 'key' ? { kid: target } : {}) } });
    this.propagate('revocation.added', rec, 'revocation not published');
    return rec;
  }

  async kill(scope: 'nhi' | 'tool' | 'global', target: string | null, reason: string, actor: string) {
    const rec = { id: newId('kill'), scope, target, reason, createdBy: actor, createdAt: this.d.clock.now(), liftedAt: null, liftedBy: null };
    await this.d.store.addKillSwitch(rec);
    this.revocations.applyKill(rec);
    this.d.audit.record({ type: 'kill.engaged', actor, subject: scope === 'nhi' ? target : null, tool: scope === 'tool' ? target : null, data: { scope, reason, kill_id: rec.id } });
    this.propagate('kill.added', rec, 'kill not published');
    return rec;
  }

  /**
   * Many revocations and kill switches written through `store` (the caller's transaction: a
   * batch of signals, group-committed with the signal records), in one multi-row INSERT for
   * the revocations. Nothing is applied, audited or published until the caller has committed
   * and calls `commit()`: it applies every record to this instance's revocation state at once,
   * audits them and publishes them all (in flight together, none awaited in turn; the store is
   * the truth, and instances that miss a message reload it within `reloadInterval`).
   * `published` settles when every publish has been acknowledged or has failed (logged).
   */
  async stage(store: StagingStore, ops: readonly EnforcementOp[]): Promise<{ revocations: RevocationRecord[]; kills: KillSwitchRecord[]; commit: (keep?: ReadonlySet<string>) => Promise<void> }> {
    const now = this.d.clock.now();
    const allRevs: Array<{ rec: RevocationRecord; actor: string; nhiId: string | null; jti?: string }> = [];
    const allKills: Array<{ rec: KillSwitchRecord; actor: string }> = [];
    for (const o of ops) {
      if (o.op === 'revoke_token') {
        const tok = this.pending?.(o.jti) ?? await store.getIssuedToken(o.jti);
        allRevs.push({ rec: { id: newId('rev'), kind: 'token', target: o.jti, notBefore: null, reason: o.reason, signalId: o.signalId, createdAt: now, expiresAt: this.keptUntil(tok?.expiresAt ?? null) }, actor: o.actor, nhiId: tok?.nhiId ?? null, jti: o.jti });
      } else if (o.op === 'revoke_all') {
        allRevs.push({
          rec: { id: newId('rev'), kind: o.kind, target: o.target, notBefore: now, reason: o.reason, signalId: o.signalId, createdAt: now, expiresAt: now + this.d.maxTokenTtlS * 1000 + 60_000 },
          actor: o.actor, nhiId: o.target,
        });
      } else {
        allKills.push({ rec: { id: newId('kill'), scope: o.scope, target: o.target, reason: o.reason, createdBy: o.actor, createdAt: now, liftedAt: null, liftedBy: null }, actor: o.actor });
      }
    }
    await store.addRevocations(allRevs.map((r) => r.rec));
    for (const k of allKills) await store.addKillSwitch(k.rec);
    // `keep`: only what these signals caused was written (the caller's statement skipped the rest).
    const commit = async (keep?: ReadonlySet<string>): Promise<void> => {
      const kept = <T>(list: T[], sig: (x: T) => string | null | undefined): T[] => (keep ? list.filter((x) => { const id = sig(x); return id != null && keep.has(id); }) : list);
      const revs = kept(allRevs, (r) => r.rec.signalId);
      const kills = kept(allKills, (k) => KILL_SIGNAL_PREFIX.exec(k.rec.reason)?.[1]);
      for (const r of revs) this.revocations.applyRevocation(r.rec);
      for (const k of kills) this.revocations.applyKill(k.rec);
      // The bus first: the other instances' wait is what time to revoke measures.
      // One bus entry for the batch's revocations (and one for its kills): one write, one ack,
      // one delivery per subscriber, instead of one per record.
      const sends = [
        this.d.bus.publishMany('revocation.added', revs.map((r) => ({ data: r.rec, id: r.rec.id }))).catch((err: unknown) => this.d.logger.warn({ err }, 'revocations not published')),
        this.d.bus.publishMany('kill.added', kills.map((k) => ({ data: k.rec, id: k.rec.id }))).catch((err: unknown) => this.d.logger.warn({ err }, 'kills not published')),
      ];
      for (const r of revs) {
        const sig = r.rec.signalId ? { signal_id: r.rec.signalId } : {};
        if (r.rec.kind === 'token') this.d.audit.record({ type: 'token.revoked', actor: r.actor, subject: r.nhiId, data: { jti: r.jti, reason: r.rec.reason, ...sig } });
        else this.d.audit.record({ type: 'tokens.revoked', actor: r.actor, subject: r.rec.target, tool: null, data: { kind: r.rec.kind, reason: r.rec.reason, ...sig } });
      }
      for (const k of kills) {
        this.d.audit.record({ type: 'kill.engaged', actor: k.actor, subject: k.rec.target, tool: null, data: { scope: k.rec.scope, reason: k.rec.reason, kill_id: k.rec.id } });
      }
      await Promise.all(sends);
    };
    return { revocations: allRevs.map((r) => r.rec), kills: allKills.map((k) => k.rec), commit };
  }

  async lift(id: string, actor: string): Promise<boolean> {
    const now = this.d.clock.now();
    const ok = await this.d.store.liftKillSwitch(id, actor, now);
    if (!ok) return false;
    const rec = (await this.d.store.listKillSwitches()).find((k) => k.id === id);
    if (rec) {
      this.revocations.applyKill(rec);
      this.propagate('kill.lifted', rec, 'kill lift not published');
    }
    this.d.audit.record({ type: 'kill.lifted', actor, data: { kill_id: id } });
    return true;
  }

  /**
   * An operator's change on the bus, not awaited: the change is answered
   * once it is durable (in the store, with its audit record), and a NATS outage must not hold
   * the answer. The bus retries the publish (same message id) for its publish timeout; an
   * instance that never hears it still applies it at its next reload from the store (every
   * 5 s), and one cut off from the bus past `bus.staleness_bound` refuses every call meanwhile.
   */
  private propagate(subject: string, rec: RevocationRecord | KillSwitchRecord, failed: string): void {
    void this.d.bus.publish(subject, rec, { id: `${rec.id}:${subject}` }).catch((err: unknown) => this.d.logger.warn({ err, id: rec.id }, failed));
  }
}
