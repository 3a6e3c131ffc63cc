import { ReplicatedMap, type Bus, type BusMessage, type Clock, type Logger, type Subscription } from '../core/index.js';
import type { GovernanceStore, RiskScoreRecord } from './ports.js';
import type { RiskScore, RiskScorer } from './risk.js';
import { FINDING_STATUS_CHANGED } from './findings.js';

/** Bus subject of a changed risk score. Payload: {@link RiskChanged}. */
export const RISK_CHANGED = 'risk.changed';

export interface RiskChanged {
  nhi: string;
  score: number;
  previous: number | null;
  computed_at: number;
}

/**
 * Events after which an NHI's score may have changed (the NHI is in `nhi`) and that this
 * instance's detections do not already hand over in-process (Detections and Findings call
 * {@link RiskFeed.mark} for findings raised, denials and inventory changes they consume: one
 * bus subscription each fewer, which the memory bus wakes on every publish).
 */
const TRIGGERS = [FINDING_STATUS_CHANGED] as const;
/** At most this many NHIs are rescored per round; the rest wait for the next one. */
const MAX_PER_ROUND = 500;

export interface RiskFeedDeps {
  store: Pick<GovernanceStore, 'putRiskScores' | 'listRiskScores'>;
  risk: Pick<RiskScorer, 'one' | 'all'>;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  /** Delay between an event and the rescoring of its NHI: events of one burst are scored once. Default 250 ms. */
  debounceMs?: number;
}

/**
 * Keeps `risk_scores` and the bus up to date with governance's risk scores (roles all and
 * signals). Events that can move a score (a finding raised, acknowledged or resolved, a
 * denial, an inventory change) mark their NHI; marked NHIs are rescored together after a short
 * delay, never on the event's own path, so a burst costs one computation per NHI. A score
 * that changed is written to the store and published as `risk.changed`, which every
 * {@link RiskView} (the proxy's policy context) applies. Time-driven changes (credential age,
 * unused grants, the denial window sliding) are caught by {@link RiskFeed.rescoreAll}, which
 * the sweep calls.
 */
export class RiskFeed {
  private readonly subs: Subscription[] = [];
  private readonly known = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private started = false;
  private stopped = false;

  constructor(private readonly d: RiskFeedDeps) {}

  async start(): Promise<void> {
    this.started = true;
    for (const r of await this.d.store.listRiskScores()) this.known.set(r.nhiId, r.score);
    for (const filter of TRIGGERS) {
      this.subs.push(await this.d.bus.subscribe(filter, (m) => this.onEvent(m), { name: `governance-risk-${filter}` }));
    }
    await this.rescoreAll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.subs.map((s) => s.close()));
    await this.running;
  }

  /** Marks an NHI for rescoring (also called in-process, e.g. when an operator resolves a finding). */
  mark(nhiId: string): void {
    // Only where governance runs; findings filed under a workload (`shadow:<trust>`) have no NHI to score.
    if (!this.started || this.stopped || nhiId.startsWith('shadow:')) return;
    this.dirty.add(nhiId);
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush().catch((err: unknown) => this.d.logger.warn({ err }, 'risk scores not updated'));
      }, this.d.debounceMs ?? 250);
      this.timer.unref();
    }
  }

  /** Rescores the marked NHIs now (one round at a time). */
  async flush(): Promise<void> {
    while (this.running) await this.running;
    const batch = [...this.dirty].slice(0, MAX_PER_ROUND);
    if (batch.length === 0) return;
    for (const id of batch) this.dirty.delete(id);
    this.running = (async () => {
      const scores: RiskScore[] = [];
      for (const id of batch) {
        const s = await this.d.risk.one(id);
        if (s) scores.push(s);
      }
      await this.publish(scores);
    })().finally(() => (this.running = undefined));
    await this.running;
    if (this.dirty.size > 0 && !this.timer) this.mark([...this.dirty][0]!);
  }

  /** Rescores every NHI (at start and from the sweep). */
  async rescoreAll(): Promise<void> {
    while (this.running) await this.running;
    this.running = (async () => this.publish(await this.d.risk.all()))().finally(() => (this.running = undefined));
    await this.running;
  }

  /** The score this feed last stored for an NHI (undefined before the first computation). */
  scoreOf(nhiId: string): number | undefined {
    return this.known.get(nhiId);
  }

  private onEvent(m: BusMessage): void {
    const nhi = (m.data as { nhi?: unknown } | null)?.nhi;
    if (typeof nhi === 'string' && nhi !== '') this.mark(nhi);
  }

  private async publish(scores: RiskScore[]): Promise<void> {
    const now = this.d.clock.now();
    const changed: Array<RiskScoreRecord & { previous: number | null }> = [];
    for (const s of scores) {
      const previous = this.known.get(s.nhi);
      if (previous !== s.score) changed.push({ nhiId: s.nhi, score: s.score, computedAt: now, previous: previous ?? null });
    }
    if (changed.length === 0) return;
    await this.d.store.putRiskScores(changed);
    for (const c of changed) {
      this.known.set(c.nhiId, c.score);
      const data: RiskChanged = { nhi: c.nhiId, score: c.score, previous: c.previous, computed_at: c.computedAt };
      await this.d.bus.publish(RISK_CHANGED, data, { id: `risk:${c.nhiId}:${c.computedAt}:${c.score}` })
        .catch((err: unknown) => this.d.logger.warn({ err }, 'risk.changed not published (the store has it; views reload it)'));
    }
  }
}

export interface RiskViewDeps {
  store: Pick<GovernanceStore, 'listRiskScores'>;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  /** Default 5 s. */
  reloadIntervalMs?: number;
}

/**
 * The risk scores in memory, per instance, for the proxy's policy context (`context.risk_score`):
 * the store (`risk_scores`) is the truth, loaded at start and every `reloadIntervalMs`; `risk.changed`
 * on the bus brings changes in between. `scoreOf` is one Map lookup. An NHI governance never
 * scored (governance disabled everywhere, or not yet run) is 0.
 *
 * The scores are a {@link ReplicatedMap} (core/replicated-view.ts) whose version is the
 * computation time: an event older than the score held is ignored, and a reload (a complete
 * snapshot: rows are never deleted) keeps an event that arrived while it read and is newer than
 * the row read, while for every other NHI the row read is the truth (a score stored by an
 * instance whose clock is behind is not held off by an older event with a later time).
 */
export class RiskView {
  private readonly byNhi = new ReplicatedMap<string, { score: number; at: number }>({ version: (s) => s.at });
  private sub: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly d: RiskViewDeps) {}

  async start(): Promise<void> {
    this.sub = await this.d.bus.subscribe(RISK_CHANGED, (m) => this.apply(m.data as RiskChanged), { name: 'risk-view' });
    await this.reload();
    this.timer = setInterval(() => void this.reload().catch((err: unknown) => this.d.logger.warn({ err }, 'risk score reload failed')), this.d.reloadIntervalMs ?? 5000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sub?.close();
  }

  async reload(): Promise<void> {
    // Before the read: an event from now on may be newer than what is read.
    const ticket = this.byNhi.begin();
    let rows: RiskScoreRecord[];
    try {
      rows = await this.d.store.listRiskScores();
    } catch (err) {
      this.byNhi.abandon(ticket);
      throw err;
    }
    this.byNhi.install(ticket, rows.map((r) => [r.nhiId, { score: r.score, at: r.computedAt }] as const));
  }

  /** Applies one `risk.changed` (idempotent; an older computation never replaces a newer one). */
  apply(e: RiskChanged): void {
    if (typeof e?.nhi !== 'string' || typeof e.score !== 'number' || typeof e.computed_at !== 'number') return;
    this.byNhi.apply(e.nhi, { score: e.score, at: e.computed_at });
  }

  /** The NHI's current score, 0–100 (0 when governance never scored it). */
  scoreOf(nhiId: string): number {
    return this.byNhi.get(nhiId)?.score ?? 0;
  }
}
