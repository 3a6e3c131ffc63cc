import type { AuditSink, Bus, Clock, Logger, MandateConfig } from '../core/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type { SignalsStore } from '../signals/index.js';
import type { EnforcementStore } from '../enforcement/index.js';
import { Detections } from './detections.js';
import { mintingSeries, type MintingSeries } from './baseline.js';
import { Findings } from './findings.js';
import { Playbooks, type KillSwitches, type PlaybookSignals } from './playbooks.js';
import { Programme, type ProgrammeMetrics } from './programme.js';
import { RiskScorer } from './risk.js';
import { RiskFeed } from './risk-feed.js';
import type { GovernanceStore } from './ports.js';

const HOUR_MS = 3_600_000;

export interface GovernanceDeps {
  config: Readonly<MandateConfig>;
  store: GovernanceStore & InventoryStore & Pick<SignalsStore, 'listSignals'> & Pick<EnforcementStore, 'listKillSwitches'>;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  signals: PlaybookSignals;
  /** Lifts a kill switch (the broker's `lift`), to undo a playbook's `disable`. */
  liftKill: KillSwitches['lift'];
  /** Run the bus consumers, the sweep and the playbooks here (roles all and signals). */
  active: boolean;
  /** Each programme computation (for the Prometheus gauges). */
  onProgramme?: (m: ProgrammeMetrics) => void;
  /** Each bus event a detection consumer completed, by its subscription filter (for the Prometheus counter). */
  onEvent?: (filter: string) => void;
}

/**
 * Governance: detections over the bus and a periodic sweep, findings, risk scores,
 * playbooks and programme metrics. The parts are separate classes; this one starts and stops
 * them together and runs the sweep.
 */
export class Governance {
  readonly findings: Findings;
  readonly detections: Detections;
  readonly risk: RiskScorer;
  readonly playbooks: Playbooks;
  readonly programme: Programme;
  /** Keeps `risk_scores` and `risk.changed` current for the proxies' policy context. */
  readonly riskFeed: RiskFeed;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly d: GovernanceDeps) {
    const { config, store, bus, audit, clock, logger } = d;
    // Findings and detections hand the NHIs whose score may move to the risk feed in-process (it only rescores while running).
    const onRiskInput = (nhiId: string) => this.riskFeed.mark(nhiId);
    this.findings = new Findings({ store, audit, bus, clock, logger, onRiskInput });
    this.detections = new Detections({ config, store, bus, findings: this.findings, clock, logger, onRiskInput, ...(d.onEvent ? { onEvent: d.onEvent } : {}) });
    const flush = () => this.detections.flushGrantUse();
    this.risk = new RiskScorer({ config, store, clock, beforeScore: flush });
    this.playbooks = new Playbooks({
      config, store, signals: d.signals, kills: { listKillSwitches: (o) => store.listKillSwitches(o), lift: d.liftKill }, risk: this.risk, bus, audit, clock, logger,
    });
    this.programme = new Programme({ config, store, clock, beforeCompute: flush });
    this.riskFeed = new RiskFeed({ store, risk: this.risk, bus, clock, logger });
  }

  async start(): Promise<void> {
    if (!this.d.active || !this.d.config.governance.enabled) return;
    await this.detections.start();
    await this.playbooks.start();
    await this.riskFeed.start();
    this.running = true;
    this.timer = setInterval(() => void this.sweep().catch((err: unknown) => this.d.logger.error({ err }, 'governance sweep failed')), this.d.config.governance.sweep_interval * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (!this.running) return;
    this.running = false;
    await this.riskFeed.stop();
    await this.playbooks.stop();
    await this.detections.stop();
  }

  /**
   * The periodic work: stale-credential findings, today's programme snapshot, score playbooks
   * for every active NHI. Also callable by an operator (`POST /admin/v1/governance/sweep`).
   */
  async sweep(): Promise<{ findings: number; programme: ProgrammeMetrics }> {
    const findings = await this.detections.sweep();
    const programme = await this.programme.snapshot();
    this.d.onProgramme?.(programme);
    if (this.d.config.governance.playbooks.some((p) => p.score_at_least !== undefined)) {
      for (const n of await this.d.store.listNhis({ status: 'active' })) await this.playbooks.checkScore(n.id);
    }
    // Scores move with time too (credential age, unused grants, the denial window).
    if (this.running) await this.riskFeed.rescoreAll();
    return { findings, programme };
  }

  /**
   * Tokens per NHI per UTC hour over the last `hours` hours with the minting baseline's
   * threshold and the anomalous hours marked (the rule of the minting-rate detection, applied
   * to the stored issuance): the NHIs with an anomaly first, then by tokens, at most `limit`.
   */
  async mintingRate(o: { hours: number; limit: number; nhi?: string }): Promise<{ hours: number[]; series: MintingSeries[] }> {
    const m = this.d.config.governance.minting_rate;
    const toHour = Math.floor(this.d.clock.now() / HOUR_MS);
    const fromHour = toHour - o.hours + 1;
    const since = (fromHour - 24 * (Math.max(m.baseline_days, m.min_baseline_days) + 1)) * HOUR_MS;
    const rows = (await this.d.store.issuanceByHour(since)).filter((r) => o.nhi === undefined || r.nhiId === o.nhi);
    const opts = { baselineDays: m.baseline_days, minBaselineDays: m.min_baseline_days, minCount: m.min_count, madFactor: m.mad_factor, newHour: m.new_hour };
    const series = mintingSeries(rows, opts, fromHour, toHour)
      .filter((s) => s.total > 0)
      .sort((a, b) => Number(b.anomalies.length > 0) - Number(a.anomalies.length > 0) || b.total - a.total || a.nhi.localeCompare(b.nhi))
      .slice(0, o.limit);
    const hours: number[] = [];
    for (let h = fromHour; h <= toHour; h++) hours.push(h * HOUR_MS);
    return { hours, series };
  }

  /** Programme metrics now (and the gauges updated). */
  async programmeNow(): Promise<ProgrammeMetrics> {
    const m = await this.programme.compute();
    this.d.onProgramme?.(m);
    return m;
  }
}
