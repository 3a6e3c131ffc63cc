import type { Bus, Clock, Logger, Subscription } from '../core/index.js';
import type { RestrictionKind, RestrictionRecord, SignalsStore } from './ports.js';

/** Bus subjects for restrictions. Payloads are the store records (no secrets). */
export const RESTRICTION_SUBJECTS = {
  added: 'restriction.added',
  lifted: 'restriction.lifted',
} as const;

export interface Restriction {
  kind: RestrictionKind;
  /** The token profile the NHI falls back to while restricted. */
  fallbackTier: string;
  signalId: string;
  /** The signal's reason code (e.g. `caep.risk_level_change`), named in refusals. */
  reason: string;
}

/**
 * The step-down / step-up restrictions in force, in memory per instance, modelled on the
 * broker's RevocationState: the store is the truth, the bus (`restriction.*`) brings changes in
 * milliseconds, and a periodic reload catches what a disconnected instance missed. The broker
 * and the proxy consult `restrictionOf(nhiId)` (an O(1) lookup) on each request.
 */
export class RestrictionState {
  /** nhiId → the newest active restriction. */
  private byNhi = new Map<string, RestrictionRecord>();
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Epoch ms of the last successful reload from the store. */
  lastSyncAt = 0;

  constructor(
    private readonly deps: { store: Pick<SignalsStore, 'listRestrictions'>; bus: Bus; clock: Clock; logger: Logger; reloadIntervalMs?: number },
  ) {}

  async start(): Promise<void> {
    this.subs.push(await this.deps.bus.subscribe('restriction.>', (m) => this.apply(m.data as RestrictionRecord), { name: 'restriction-state' }));
    await this.reload();
    const every = this.deps.reloadIntervalMs ?? 5000;
    this.timer = setInterval(() => void this.reload().catch((err: unknown) => this.deps.logger.warn({ err }, 'restriction reload failed')), every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.subs.map((s) => s.close()));
  }

  /** Reloads every active restriction from the store (the truth). */
  async reload(): Promise<void> {
    const active = await this.deps.store.listRestrictions({ activeOnly: true });
    const next = new Map<string, RestrictionRecord>();
    // Oldest first: the newest active restriction of an NHI wins.
    for (const r of active) next.set(r.nhiId, r);
    this.byNhi = next;
    this.lastSyncAt = this.deps.clock.now();
  }

  /** Applies one record from the bus (idempotent; an older record never replaces a newer one). */
  apply(r: RestrictionRecord): void {
    const cur = this.byNhi.get(r.nhiId);
    if (r.liftedAt !== null) {
      if (cur && (cur.id === r.id || cur.createdAt <= r.createdAt)) this.byNhi.delete(r.nhiId);
      return;
    }
    if (!cur || cur.createdAt <= r.createdAt) this.byNhi.set(r.nhiId, r);
  }

  /** The restriction in force for this NHI, or undefined. */
  restrictionOf(nhiId: string): Restriction | undefined {
    const r = this.byNhi.get(nhiId);
    return r && { kind: r.kind, fallbackTier: r.fallbackTier, signalId: r.signalId, reason: r.reason };
  }

  active(): RestrictionRecord[] {
    return [...this.byNhi.values()];
  }
}
