import type { Clock, MandateConfig } from '../core/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type { SignalsStore } from '../signals/index.js';
import { median } from './baseline.js';
import type { GovernanceStore, ProgrammeSnapshotRecord, Severity } from './ports.js';

/** The NHI programme in numbers. Ratios are 0–1; ages in days; times in seconds. */
export interface ProgrammeMetrics {
  at: number;
  nhis: number;
  /** Active NHIs that authenticate only by federation (no stored secret, no key). */
  federated_ratio: number;
  /** Active NHIs holding at least one static secret. */
  static_secret_ratio: number;
  /** Active NHIs with a private key (private_key_jwt) and no static secret. */
  private_key_ratio: number;
  /** Median age since creation or rotation of stored credentials (static secrets and keys), days. */
  median_secret_age_days: number | null;
  admin_nhis: number;
  /** Stored credentials (not federation) living longer than governance.credentials.max_lifetime. */
  long_lived_credentials: number;
  /** Time to revoke: mean and p99 of applied_at − received_at of revoke / disable signals in the last 30 days. */
  revoke_mean_s: number | null;
  revoke_p99_s: number | null;
  revoke_samples: number;
  exceptions_open: number;
  exceptions_overdue: number;
  /** Grants not used within governance.risk.unused_grant_after. */
  unused_grants: number;
  findings_open: Record<Severity, number>;
}

/**
 * The programme as gauge values (`mandate_programme{metric=…}`): the metric names operators'
 * dashboards use; null means "no value" (the series is removed rather than set to 0).
 */
export function programmeGauges(m: ProgrammeMetrics): Record<string, number | null> {
  return {
    federated_ratio: m.federated_ratio,
    static_secret_ratio: m.static_secret_ratio,
    private_key_ratio: m.private_key_ratio,
    median_secret_age_days: m.median_secret_age_days,
    admin_nhis: m.admin_nhis,
    long_lived_credentials: m.long_lived_credentials,
    revoke_mean_seconds: m.revoke_mean_s,
    revoke_p99_seconds: m.revoke_p99_s,
    exceptions_open: m.exceptions_open,
    exceptions_overdue: m.exceptions_overdue,
    unused_grants: m.unused_grants,
  };
}

const DAY_MS = 86_400_000;
const AGE_BINS: ReadonlyArray<[number, string]> = [[7, '< 1 week'], [30, '1-4 weeks'], [90, '1-3 months'], [180, '3-6 months'], [Infinity, '> 6 months']];
const REVOKE_ACTIONS = new Set(['revoke_tokens', 'disable', 'block']);

export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

export interface ProgrammeDeps {
  config: Readonly<MandateConfig>;
  store: GovernanceStore & Pick<InventoryStore, 'listNhis' | 'listCredentials' | 'listGrants'> & Pick<SignalsStore, 'listSignals'>;
  clock: Clock;
  beforeCompute?: () => Promise<void>;
}

export class Programme {
  constructor(private readonly d: ProgrammeDeps) {}

  async compute(): Promise<ProgrammeMetrics> {
    await this.d.beforeCompute?.();
    const now = this.d.clock.now();
    const g = this.d.config.governance;
    const [nhis, creds, grants, signals, open] = await Promise.all([
      this.d.store.listNhis({ status: 'active' }), this.d.store.listCredentials(), this.d.store.listGrants(),
      this.d.store.listSignals({ since: now - 30 * DAY_MS, limit: 10_000 }), this.d.store.listFindings({ status: 'open', limit: 10_000 }),
    ]);
    const active = new Set(nhis.map((n) => n.id));
    const live = creds.filter((c) => active.has(c.nhiId));
    const types = new Map<string, Set<string>>();
    for (const c of live) types.set(c.nhiId, (types.get(c.nhiId) ?? new Set()).add(c.type));
    let fed = 0;
    let stat = 0;
    let key = 0;
    for (const n of nhis) {
      const t = types.get(n.id) ?? new Set();
      if (t.has('static_secret')) stat++;
      else if (t.has('private_key_jwt')) key++;
      else if (t.has('federated')) fed++;
    }
    const ratio = (x: number) => (nhis.length ? Math.round((x / nhis.length) * 1000) / 1000 : 0);
    const stored = live.filter((c) => c.type !== 'federated');
    const ages = stored.map((c) => (now - (c.lastRotatedAt ?? c.createdAt)) / DAY_MS);
    const exceptions = live.filter((c) => c.type === 'static_secret' && c.exceptionExpiresAt !== null);
    const revokes = signals
      .filter((s) => REVOKE_ACTIONS.has(s.action) && s.appliedAt !== null && s.status === 'applied')
      .map((s) => (s.appliedAt! - s.receivedAt) / 1000);
    const findings: Record<Severity, number> = { low: 0, medium: 0, high: 0, critical: 0 };
    for (const f of open) findings[f.severity]++;
    return {
      at: now,
      nhis: nhis.length,
      federated_ratio: ratio(fed),
      static_secret_ratio: ratio(stat),
      private_key_ratio: ratio(key),
      median_secret_age_days: ages.length ? Math.round(median(ages) * 10) / 10 : null,
      admin_nhis: nhis.filter((n) => n.tier === 'admin').length,
      long_lived_credentials: stored.filter((c) => now - c.createdAt > g.credentials.max_lifetime * 1000).length,
      revoke_mean_s: revokes.length ? round3(revokes.reduce((a, b) => a + b, 0) / revokes.length) : null,
      revoke_p99_s: revokes.length ? round3(percentile(revokes, 0.99)) : null,
      revoke_samples: revokes.length,
      exceptions_open: exceptions.length,
      exceptions_overdue: exceptions.filter((c) => c.exceptionExpiresAt! < now).length,
      unused_grants: grants.filter((x) => active.has(x.nhiId) && now - (x.lastUsedAt ?? x.createdAt) > g.risk.unused_grant_after * 1000).length,
      findings_open: findings,
    };
  }

  /** Computes and stores today's snapshot (replacing an earlier one of the same day). */
  async snapshot(): Promise<ProgrammeMetrics> {
    const m = await this.compute();
    await this.d.store.putProgrammeSnapshot({ day: dayOf(m.at), takenAt: m.at, metrics: m as unknown as Record<string, unknown> });
    return m;
  }

  /**
   * Age (since creation or last rotation) of the stored credentials (static secrets and keys)
   * of active NHIs, in bins: the distribution behind median_secret_age_days.
   */
  async credentialAges(): Promise<{ at: number; credentials: number; bins: Array<{ label: string; max_days: number | null; count: number }> }> {
    const now = this.d.clock.now();
    const [nhis, creds] = await Promise.all([this.d.store.listNhis({ status: 'active' }), this.d.store.listCredentials()]);
    const active = new Set(nhis.map((n) => n.id));
    const bins = AGE_BINS.map(([max, label]) => ({ label, max_days: Number.isFinite(max) ? max : null, count: 0 }));
    let n = 0;
    for (const c of creds) {
      if (!active.has(c.nhiId) || c.type === 'federated') continue;
      const days = (now - (c.lastRotatedAt ?? c.createdAt)) / DAY_MS;
      bins[AGE_BINS.findIndex(([max]) => days < max)]!.count++;
      n++;
    }
    return { at: now, credentials: n, bins };
  }

  /** The trend: the last snapshot of each ISO week (Monday-based), oldest first, over `weeks` weeks. */
  async trend(weeks: number): Promise<ProgrammeSnapshotRecord[]> {
    const since = dayOf(this.d.clock.now() - weeks * 7 * DAY_MS);
    const snaps = await this.d.store.listProgrammeSnapshots(since);
    const byWeek = new Map<string, ProgrammeSnapshotRecord>();
    for (const s of snaps) byWeek.set(weekOf(s.day), s);
    return [...byWeek.values()];
  }
}

/** The Monday (UTC) of the week of a YYYY-MM-DD day. */
export function weekOf(day: string): string {
  const t = Date.parse(`${day}T00:00:00Z`);
  const dow = (new Date(t).getUTCDay() + 6) % 7;
  return dayOf(t - dow * DAY_MS);
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
