import { ReplicatedMap, type Bus, type Clock, type Logger, type Subscription } from '../core/index.js';
import type { EnforcementStore, RestrictionKind, RestrictionRecord } from './ports.js';

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
 *
 * The state is a {@link ReplicatedMap} (core/replicated-view.ts) keyed by NHI: the newest active
 * restriction of each NHI, whose version is its `createdAt` (a newer restriction supersedes the
 * NHI's active one). Lifting a restriction removes the NHI's entry at that restriction's version
 * (tombstoned, and a newer restriction of the NHI stands against it); a reload is a complete
 * snapshot started before the read, so a restriction added or lifted while the reload is in
 * flight is kept over what the reload read.
 */
export class RestrictionState {
  /** nhiId → the newest active restriction. */
  private readonly byNhi = new ReplicatedMap<string, RestrictionRecord>({ version: (r) => r.createdAt });
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Epoch ms of the last successful reload from the store. */
  lastSyncAt = 0;

  constructor(
    private readonly deps: { store: Pick<EnforcementStore, 'listRestrictions'>; bus: Bus; clock: Clock; logger: Logger; reloadIntervalMs?: number },
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
    // Before the read: a restriction added or lifted from now on may be missing from what is read.
    const ticket = this.byNhi.begin();
    let active: RestrictionRecord[];
    try {
      active = await this.deps.store.listRestrictions({ activeOnly: true });
    } catch (err) {
      this.byNhi.abandon(ticket);
      throw err;
    }
    const newest = new Map<string, RestrictionRecord>();
    // Oldest first: the newest active restriction of an NHI wins.
    for (const r of active) newest.set(r.nhiId, r);
    this.byNhi.install(ticket, newest);
    this.lastSyncAt = this.deps.clock.now();
  }

  /** Applies one record from the bus (idempotent; an older record never replaces a newer one). */
  apply(r: RestrictionRecord): void {
    if (r.liftedAt !== null) this.byNhi.remove(r.nhiId, r.createdAt);
    else this.byNhi.apply(r.nhiId, r);
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
