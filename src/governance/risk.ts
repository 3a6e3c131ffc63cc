import type { Clock, MandateConfig } from '../core/index.js';
import type { CredentialRecord, GrantRecord, InventoryStore, NhiRecord } from '../inventory/index.js';
import type { FindingRecord, GovernanceStore, Severity } from './ports.js';

/** One reason a score is what it is. */
export interface RiskContribution {
  factor: 'tier' | 'credentials' | 'credential_age' | 'exceptions' | 'unused_grants' | 'findings' | 'denials';
  points: number;
  detail: string;
}

export interface RiskScore {
  nhi: string;
  /** 0–100. */
  score: number;
  tier: string;
  status: string;
  owner: string;
  contributions: RiskContribution[];
}

const DAY_MS = 86_400_000;

/**
 * Points per factor, capped per factor so that one kind of risk cannot stand for all of them,
 * and the sum capped at 100. The weights are a judgement, stated here so that a score can be
 * explained: what an NHI may do (tier), how it authenticates (stored secrets are worse than
 * keys, keys worse than federation), how old its credentials are, exceptions still open or
 * overdue, standing privilege (grants not used for a while), what detections found, and
 * recent denials.
 */
export const RISK_WEIGHTS = {
  tier: { read: 0, write: 10, admin: 25 } as Record<string, number>,
  staticSecret: 15,
  privateKey: 5,
  credentialsCap: 30,
  staleCredential: 10,
  staleCap: 20,
  openException: 5,
  overdueException: 20,
  exceptionsCap: 30,
  unusedGrant: 5,
  unusedCap: 20,
  finding: { low: 2, medium: 5, high: 15, critical: 30 } as Record<Severity, number>,
  findingsCap: 60,
  denial: 1,
  denialsCap: 10,
} as const;

export interface RiskInputs {
  nhi: NhiRecord;
  credentials: CredentialRecord[];
  grants: GrantRecord[];
  findings: FindingRecord[];
  denials: number;
  now: number;
}

/** The score of one NHI from its inputs (pure). */
export function scoreNhi(i: RiskInputs, cfg: Readonly<MandateConfig>['governance']): RiskScore {
  const w = RISK_WEIGHTS;
  const c: RiskContribution[] = [];
  const add = (factor: RiskContribution['factor'], points: number, detail: string) => {
    if (points > 0) c.push({ factor, points, detail });
  };
  add('tier', w.tier[i.nhi.tier] ?? 0, `permission tier ${i.nhi.tier}`);

  const statics = i.credentials.filter((x) => x.type === 'static_secret');
  const keys = i.credentials.filter((x) => x.type === 'private_key_jwt');
  add('credentials', Math.min(w.credentialsCap, statics.length * w.staticSecret + keys.length * w.privateKey),
    [statics.length ? `${statics.length} static secret(s)` : '', keys.length ? `${keys.length} private key(s)` : ''].filter(Boolean).join(', '));

  const rotationMs = cfg.credentials.rotation_max_age * 1000;
  const stale = [...statics, ...keys].filter((x) => i.now - (x.lastRotatedAt ?? x.createdAt) > rotationMs);
  add('credential_age', Math.min(w.staleCap, stale.length * w.staleCredential),
    stale.map((x) => `${x.id} not rotated for ${Math.floor((i.now - (x.lastRotatedAt ?? x.createdAt)) / DAY_MS)} d`).join(', '));

  const exceptions = statics.filter((x) => x.exceptionExpiresAt !== null);
  const overdue = exceptions.filter((x) => x.exceptionExpiresAt! < i.now);
  add('exceptions', Math.min(w.exceptionsCap, (exceptions.length - overdue.length) * w.openException + overdue.length * w.overdueException),
    [exceptions.length - overdue.length ? `${exceptions.length - overdue.length} open exception(s)` : '', overdue.length ? `${overdue.length} overdue (${overdue.map((x) => x.exceptionTicket ?? x.id).join(', ')})` : ''].filter(Boolean).join(', '));

  const unusedMs = cfg.risk.unused_grant_after * 1000;
  const unused = i.grants.filter((g) => i.now - (g.lastUsedAt ?? g.createdAt) > unusedMs);
  add('unused_grants', Math.min(w.unusedCap, unused.length * w.unusedGrant),
    unused.length ? `${unused.map((g) => g.toolId).join(', ')} unused for ${Math.floor(unusedMs / DAY_MS)}+ days` : '');

  const open = i.findings.filter((f) => f.status !== 'resolved');
  const bySev = new Map<Severity, number>();
  for (const f of open) bySev.set(f.severity, (bySev.get(f.severity) ?? 0) + 1);
  add('findings', Math.min(w.findingsCap, open.reduce((s, f) => s + w.finding[f.severity], 0)),
    [...bySev].sort((a, b) => w.finding[b[0]] - w.finding[a[0]]).map(([s, n]) => `${n} ${s}`).join(', ') + (open.length ? ` open finding(s): ${[...new Set(open.map((f) => f.detection))].join(', ')}` : ''));

  add('denials', Math.min(w.denialsCap, i.denials * w.denial), `${i.denials} denial(s) in the last ${Math.round(cfg.risk.denial_window / 3600)} h`);

  c.sort((a, b) => b.points - a.points);
  return {
    nhi: i.nhi.id, score: Math.min(100, c.reduce((s, x) => s + x.points, 0)), tier: i.nhi.tier, status: i.nhi.status, owner: i.nhi.owner, contributions: c,
  };
}

export interface RiskDeps {
  config: Readonly<MandateConfig>;
  store: GovernanceStore & Pick<InventoryStore, 'getNhi' | 'listNhis' | 'listCredentials' | 'listGrants'>;
  clock: Clock;
  /** Writes batched grant uses first, so the score sees the newest lastUsedAt. */
  beforeScore?: () => Promise<void>;
}

/** Risk scores from the store, one NHI or all of them. */
export class RiskScorer {
  constructor(private readonly d: RiskDeps) {}

  async one(nhiId: string): Promise<RiskScore | undefined> {
    await this.d.beforeScore?.();
    const nhi = await this.d.store.getNhi(nhiId);
    if (!nhi) return undefined;
    const now = this.d.clock.now();
    const [credentials, grants, findings, denials] = await Promise.all([
      this.d.store.listCredentials(nhiId), this.d.store.listGrants({ nhiId }),
      this.d.store.listFindings({ nhiId, limit: 10_000 }), this.d.store.denialsByNhi(now - this.d.config.governance.risk.denial_window * 1000),
    ]);
    return scoreNhi({ nhi, credentials, grants, findings, denials: denials.get(nhiId) ?? 0, now }, this.d.config.governance);
  }

  /** Every NHI, riskiest first (ties by id). */
  async all(): Promise<RiskScore[]> {
    await this.d.beforeScore?.();
    const now = this.d.clock.now();
    const [nhis, credentials, grants, open, acked, denials] = await Promise.all([
      this.d.store.listNhis(), this.d.store.listCredentials(), this.d.store.listGrants(),
      this.d.store.listFindings({ status: 'open', limit: 10_000 }), this.d.store.listFindings({ status: 'acknowledged', limit: 10_000 }),
      this.d.store.denialsByNhi(now - this.d.config.governance.risk.denial_window * 1000),
    ]);
    const by = <T extends { nhiId: string }>(xs: T[]) => {
      const m = new Map<string, T[]>();
      for (const x of xs) m.set(x.nhiId, [...(m.get(x.nhiId) ?? []), x]);
      return m;
    };
    const cr = by(credentials);
    const gr = by(grants);
    const fi = by([...open, ...acked]);
    return nhis
      .map((nhi) => scoreNhi({ nhi, credentials: cr.get(nhi.id) ?? [], grants: gr.get(nhi.id) ?? [], findings: fi.get(nhi.id) ?? [], denials: denials.get(nhi.id) ?? 0, now }, this.d.config.governance))
      .sort((a, b) => b.score - a.score || a.nhi.localeCompare(b.nhi));
  }
}
