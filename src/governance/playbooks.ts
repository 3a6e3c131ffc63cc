import { NotFoundError, ValidationError, newId, type AuditSink, type Bus, type BusMessage, type Clock, type Logger, type MandateConfig, type Subscription } from '../core/index.js';
import type { SignalInput, SignalRecord } from '../signals/index.js';
import type { KillSwitchRecord } from '../enforcement/index.js';
import type { InventoryStore } from '../inventory/index.js';
import { DETECTION_RAISED, atLeast } from './findings.js';
import type { GovernanceStore, PlaybookActionRecord, Severity } from './ports.js';
import type { RiskScorer } from './risk.js';

/** The part of Signals (src/signals) playbooks act through. */
export interface PlaybookSignals {
  raise(input: SignalInput): Promise<SignalRecord>;
  lift(nhiId: string, actor: string): Promise<unknown[]>;
}

/** The part of the broker that lifts a kill switch (undoing a `disable`). */
export interface KillSwitches {
  listKillSwitches(opts?: { activeOnly?: boolean }): Promise<KillSwitchRecord[]>;
  lift(id: string, actor: string): Promise<boolean>;
}

export type PlaybookConfig = Readonly<MandateConfig>['governance']['playbooks'][number];

export interface PlaybooksDeps {
  config: Readonly<MandateConfig>;
  store: GovernanceStore & Pick<InventoryStore, 'getNhi'>;
  signals: PlaybookSignals;
  kills: KillSwitches;
  risk: RiskScorer;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
}

export function playbookActionJson(a: PlaybookActionRecord) {
  return {
    id: a.id, playbook: a.playbook, trigger: a.trigger, finding_id: a.findingId, nhi: a.nhiId, action: a.action, dry_run: a.dryRun,
    signal_id: a.signalId, created_at: a.createdAt, undone_at: a.undoneAt, undone_by: a.undoneBy,
  };
}

/**
 * Playbooks: a finding (detection, minimum severity) or a risk score at a
 * threshold becomes an internal signal through the Signals capability. Each (trigger, playbook)
 * acts once, claimed in the store, so several instances hearing one `detection.raised` act once.
 * Every action is audited with the finding that caused it; dry-run records what would have been done.
 */
export class Playbooks {
  private sub: Subscription | undefined;

  constructor(private readonly d: PlaybooksDeps) {}

  async start(): Promise<void> {
    if (this.d.config.governance.playbooks.length === 0) return;
    this.sub = await this.d.bus.subscribe(DETECTION_RAISED, (m) => this.onFinding(m), { name: 'governance-playbooks' });
  }

  async stop(): Promise<void> {
    await this.sub?.close();
  }

  /** The bus sequence of the last `detection.raised` handled (0 when none). */
  lastSeq(): number {
    return this.sub?.lastSeq ?? 0;
  }

  private async onFinding(m: BusMessage): Promise<void> {
    const f = m.data as { id?: string; nhi?: string; detection?: string; severity?: Severity; status?: string; title?: string };
    if (!f.id || !f.nhi || !f.detection || !f.severity || f.status === 'resolved') return;
    for (const p of this.d.config.governance.playbooks) {
      if (p.score_at_least !== undefined) continue;
      if (p.detection !== undefined && p.detection !== f.detection) continue;
      if (p.min_severity !== undefined && !atLeast(f.severity, p.min_severity)) continue;
      await this.act(p, `finding:${f.id}`, f.id, f.nhi, f.severity, `${f.detection}: ${f.title ?? ''}`.slice(0, 400));
    }
    await this.checkScore(f.nhi);
  }

  /** Score playbooks for one NHI (after a finding, and from the sweep for every NHI). */
  async checkScore(nhiId: string): Promise<void> {
    const ps = this.d.config.governance.playbooks.filter((p) => p.score_at_least !== undefined);
    if (ps.length === 0) return;
    const s = await this.d.risk.one(nhiId);
    if (!s) return;
    for (const p of ps) {
      if (s.score >= p.score_at_least!) {
        await this.act(p, `score:${nhiId}`, null, nhiId, s.score >= 80 ? 'critical' : 'high', `risk score ${s.score} >= ${p.score_at_least}`);
      }
    }
  }

  private async act(p: PlaybookConfig, trigger: string, findingId: string | null, nhiId: string, severity: Severity, why: string): Promise<void> {
    // A finding filed under a workload that maps to no NHI (shadow agents) has nobody to act on.
    if (!(await this.d.store.getNhi(nhiId))) return;
    const dryRun = this.d.config.governance.dry_run || p.dry_run;
    const rec: PlaybookActionRecord = {
      id: newId('pba'), playbook: p.name, trigger, findingId, nhiId, action: p.action, dryRun, signalId: null,
      createdAt: this.d.clock.now(), undoneAt: null, undoneBy: null,
    };
    if (!(await this.d.store.claimPlaybookAction(rec))) return;
    const actor = `playbook:${p.name}`;
    if (dryRun) {
      this.d.audit.record({ type: 'playbook.dry_run', actor, subject: nhiId, decision: p.action, data: { playbook_action_id: rec.id, finding_id: findingId, trigger, why } });
      return;
    }
    const sig = await this.d.signals.raise({
      nhiId, reason: `playbook ${p.name}: ${why}`.slice(0, 500), severity, action: p.action, source: actor,
      data: { playbook: p.name, playbook_action_id: rec.id, finding_id: findingId, trigger },
    });
    await this.d.store.setPlaybookActionSignal(rec.id, sig.id);
    this.d.audit.record({
      type: 'playbook.acted', actor, subject: nhiId, decision: p.action,
      data: { playbook_action_id: rec.id, finding_id: findingId, trigger, signal_id: sig.id, signal_status: sig.status, why },
    });
  }

  /** The playbooks this instance's config declares (what `mandate drill` checks before it relies on one). */
  configured(): { enabled: boolean; dry_run: boolean; playbooks: Array<{ name: string; detection: string | null; min_severity: Severity | null; score_at_least: number | null; action: string; dry_run: boolean }> } {
    const g = this.d.config.governance;
    return {
      enabled: g.enabled,
      dry_run: g.dry_run,
      playbooks: g.playbooks.map((p) => ({
        name: p.name, detection: p.detection ?? null, min_severity: p.min_severity ?? null, score_at_least: p.score_at_least ?? null, action: p.action, dry_run: p.dry_run,
      })),
    };
  }

  list(filter: { nhiId?: string; limit?: number }): Promise<PlaybookActionRecord[]> {
    return this.d.store.listPlaybookActions(filter);
  }

  /**
   * An operator undoes an automatic step-down / step-up (lifts the NHI's restriction) or
   * disable (lifts the kill switch the signal engaged). Revoked tokens stay revoked: agents
   * simply ask for new ones.
   */
  async undo(id: string, actor: string): Promise<PlaybookActionRecord> {
    const a = await this.d.store.getPlaybookAction(id);
    if (!a) throw new NotFoundError(`no playbook action "${id}"`);
    if (a.undoneAt !== null) throw new ValidationError(`playbook action "${id}" was undone already`);
    if (a.dryRun) throw new ValidationError('a dry run did nothing to undo');
    if (a.action === 'revoke_tokens') throw new ValidationError('revoked tokens cannot be restored: the NHI asks for new ones');
    const lifted: string[] = [];
    if (a.action === 'step_down' || a.action === 'step_up') {
      const r = (await this.d.signals.lift(a.nhiId, actor)) as Array<{ id: string }>;
      lifted.push(...r.map((x) => x.id));
    } else if (a.action === 'disable') {
      const prefix = `[signal ${a.signalId}] `;
      for (const k of await this.d.kills.listKillSwitches({ activeOnly: true })) {
        if (k.scope === 'nhi' && k.target === a.nhiId && k.reason.startsWith(prefix) && (await this.d.kills.lift(k.id, actor))) lifted.push(k.id);
      }
    }
    const done = await this.d.store.markPlaybookActionUndone(id, actor, this.d.clock.now());
    if (!done) throw new ValidationError(`playbook action "${id}" was undone already`);
    this.d.audit.record({ type: 'playbook.undone', actor, subject: a.nhiId, decision: a.action, data: { playbook_action_id: id, finding_id: a.findingId, signal_id: a.signalId, lifted } });
    return done;
  }
}
