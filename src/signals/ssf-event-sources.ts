import type { Subscription } from '../core/index.js';
import type { KillSwitchRecord, RestrictionRecord, RevocationRecord } from '../enforcement/index.js';
import { KILL_REASON_PREFIX } from './signals.js';
import { EVENT } from './set.js';
import type { SetQueue } from './set-queue.js';
import type { TransmitterDeps } from './transmitter.js';

/**
 * What the transmitter reports: the bus events it hears (a revocation, a kill switch, a
 * restriction), each as the CAEP or RISC event a receiver understands.
 */
export class EventSources {
  constructor(
    private readonly d: Pick<TransmitterDeps, 'store' | 'bus' | 'issuer'>,
    private readonly queue: Pick<SetQueue, 'emit'>,
  ) {}

  async subscribe(): Promise<Subscription[]> {
    return [
      await this.d.bus.subscribe('revocation.added', (m) => this.onRevocation(m.data as RevocationRecord), { name: 'ssf-transmitter-revocation' }),
      await this.d.bus.subscribe('kill.>', (m) => this.onKill(m.subject, m.data as KillSwitchRecord), { name: 'ssf-transmitter-kill' }),
      await this.d.bus.subscribe('restriction.>', (m) => this.onRestriction(m.data as RestrictionRecord), { name: 'ssf-transmitter-restriction' }),
    ];
  }

  /** revocation.added → CAEP session-revoked (an NHI's sessions, or one token as a jwt_id subject). */
  private async onRevocation(r: RevocationRecord): Promise<void> {
    const iss = this.d.issuer();
    const common = { event_timestamp: Math.floor(r.createdAt / 1000), initiating_entity: r.signalId ? 'policy' : 'admin', ...(r.reason ? { reason_admin: { en: r.reason } } : {}) };
    if (r.kind === 'nhi' && r.target) {
      await this.queue.emit(r.target, { key: r.id, subId: { format: 'opaque', id: r.target }, events: { [EVENT.sessionRevoked]: common }, txn: () => this.txnOf(r.signalId) });
    } else if (r.kind === 'token' && r.target) {
      const nhi = (await this.d.store.getIssuedToken(r.target))?.nhiId ?? null;
      await this.queue.emit(nhi, { key: r.id, subId: { format: 'jwt_id', iss, jti: r.target }, events: { [EVENT.sessionRevoked]: common }, txn: () => this.txnOf(r.signalId) });
    }
  }

  /** kill.added / kill.lifted of an NHI → RISC account-disabled / account-enabled. */
  private async onKill(subject: string, k: KillSwitchRecord): Promise<void> {
    if (k.scope !== 'nhi' || !k.target) return;
    const lifted = subject.endsWith('lifted') || k.liftedAt !== null;
    const signalId = KILL_REASON_PREFIX.exec(k.reason)?.[1] ?? null;
    await this.queue.emit(k.target, {
      key: `${k.id}:${lifted ? 'lifted' : 'added'}`,
      subId: { format: 'opaque', id: k.target },
      events: { [lifted ? EVENT.accountEnabled : EVENT.accountDisabled]: {} },
      txn: () => this.txnOf(signalId),
    });
  }

  /** restriction.added / lifted → CAEP token-claims-change (the NHI's tokens now carry another tier). */
  private async onRestriction(r: RestrictionRecord): Promise<void> {
    const lifted = r.liftedAt !== null;
    await this.queue.emit(r.nhiId, {
      key: `${r.id}:${lifted ? 'lifted' : 'added'}`,
      subId: { format: 'opaque', id: r.nhiId },
      events: {
        [EVENT.tokenClaimsChange]: {
          event_timestamp: Math.floor((r.liftedAt ?? r.createdAt) / 1000),
          initiating_entity: lifted ? 'admin' : 'policy',
          claims: lifted ? { mandate_restriction: null } : { mandate_restriction: r.kind, mandate_tier: r.fallbackTier },
        },
      },
      txn: () => this.txnOf(r.signalId),
    });
  }

  /** RFC 8417 §2.2 `txn`: the originating signal's txn (from a received SET), else the signal id. */
  private async txnOf(signalId: string | null): Promise<string | null> {
    if (!signalId) return null;
    const s = await this.d.store.getSignal(signalId).catch(() => undefined);
    return s?.txn ?? signalId;
  }
}
