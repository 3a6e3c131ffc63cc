import { NotFoundError, ValidationError, newId, type AuditSink, type Bus, type Clock, type Logger } from '../core/index.js';
import type {
  DetectionName, FindingFilter, FindingInput, FindingRecord, GovernanceStore, MuteRecord, Severity,
} from './ports.js';
import { DETECTIONS } from './ports.js';

/** Bus subject of a new or repeated finding (payload: findingJson + `outcome`). */
export const DETECTION_RAISED = 'detection.raised';
/** Bus subject of a finding acknowledged or resolved (payload: id, nhi, detection, status). */
export const FINDING_STATUS_CHANGED = 'finding.status_changed';

export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 0, medium: 1, high: 2, critical: 3 };

export function atLeast(s: Severity, min: Severity): boolean {
  return SEVERITY_RANK[s] >= SEVERITY_RANK[min];
}

export function findingJson(f: FindingRecord) {
  return {
    id: f.id, nhi: f.nhiId, detection: f.detection, key: f.key, severity: f.severity, title: f.title, evidence: f.evidence,
    first_seen: f.firstSeen, last_seen: f.lastSeen, count: f.count, status: f.status, status_by: f.statusBy, status_at: f.statusAt,
    status_note: f.statusNote,
  };
}

export function muteJson(m: MuteRecord) {
  return { id: m.id, nhi: m.nhiId, detection: m.detection, until: m.until, reason: m.reason, created_by: m.createdBy, created_at: m.createdAt };
}

// A compact JWS/JWT (three base64url parts, the first a JSON header) or a Mandate admin credential.
const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
const ADMIN_CREDENTIAL_SHAPE = /^mdt\.[^.]+\.[^.]+$/;
const SECRET_KEYS = /token|secret|assertion|password|credential_value|proof$|authorization/i;

/**
 * Evidence is built by the detections from facts that carry no secret, but it is stored and
 * shown to operators: as a second line of defence, a value shaped like a token or under a
 * key that names one is replaced, so that a future detection cannot leak one by mistake.
 */
export function safeEvidence(v: unknown, depth = 0): unknown {
  if (depth > 6) return '[depth]';
  if (typeof v === 'string') return JWT_SHAPE.test(v) || ADMIN_CREDENTIAL_SHAPE.test(v) ? '[redacted]' : v.slice(0, 500);
  if (Array.isArray(v)) return v.slice(0, 50).map((x) => safeEvidence(x, depth + 1));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = SECRET_KEYS.test(k) ? '[redacted]' : safeEvidence(x, depth + 1);
    return out;
  }
  return v;
}

export interface FindingsDeps {
  store: GovernanceStore;
  audit: AuditSink;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  /** A finding raised, acknowledged or resolved here: its NHI's risk score may move. */
  onRiskInput?: (nhiId: string) => void;
}

const MUTE_CACHE_MS = 10_000;
/** As the risk scores and programme metrics: unresolved findings beyond this many are not counted. */
const SUMMARY_LIMIT = 10_000;

/**
 * Findings: raised by the detections (deduplicated per NHI, detection and key; a muted
 * detection is dropped), audited, published as `detection.raised`; acknowledged and resolved
 * by operators.
 */
export class Findings {
  private mutes: { at: number; list: MuteRecord[] } | undefined;

  constructor(private readonly d: FindingsDeps) {}

  /** Returns the finding, or undefined when the detection is muted for this NHI. */
  async raise(input: Omit<FindingInput, 'at'> & { at?: number }): Promise<{ finding: FindingRecord; outcome: 'created' | 'updated' | 'duplicate' } | undefined> {
    const at = input.at ?? this.d.clock.now();
    if (await this.isMuted(input.nhiId, input.detection, at)) return undefined;
    const f: FindingInput = { ...input, at, key: input.key.slice(0, 300), evidence: safeEvidence(input.evidence) as Record<string, unknown> };
    const r = await this.d.store.upsertFinding(f, newId('fnd'));
    if (r.outcome === 'duplicate') return r;
    this.d.onRiskInput?.(r.finding.nhiId);
    if (r.outcome === 'created') {
      // New findings are audited; a repeat is counted on the row (its count and last seen), not logged again.
      this.d.audit.record({
        type: 'detection.raised', actor: 'governance', subject: r.finding.nhiId, decision: r.finding.severity,
        data: { finding_id: r.finding.id, detection: r.finding.detection, key: r.finding.key, severity: r.finding.severity, count: r.finding.count, evidence: r.finding.evidence, outcome: r.outcome },
      });
    }
    await this.d.bus.publish(DETECTION_RAISED, { ...findingJson(r.finding), outcome: r.outcome }, { id: `${r.finding.id}:${r.finding.count}` })
      .catch((err: unknown) => this.d.logger.warn({ err }, 'detection.raised not published'));
    return r;
  }

  list(filter: FindingFilter): Promise<FindingRecord[]> {
    return this.d.store.listFindings(filter);
  }

  /** Unresolved findings counted by status and severity. */
  async summary(): Promise<Record<'open' | 'acknowledged', Record<Severity, number>>> {
    const [open, acked] = await Promise.all([
      this.d.store.listFindings({ status: 'open', limit: SUMMARY_LIMIT }), this.d.store.listFindings({ status: 'acknowledged', limit: SUMMARY_LIMIT }),
    ]);
    const count = (fs: FindingRecord[]) => {
      const out: Record<Severity, number> = { low: 0, medium: 0, high: 0, critical: 0 };
      for (const f of fs) out[f.severity]++;
      return out;
    };
    return { open: count(open), acknowledged: count(acked) };
  }

  async get(id: string): Promise<FindingRecord> {
    const f = await this.d.store.getFinding(id);
    if (!f) throw new NotFoundError(`no finding "${id}"`);
    return f;
  }

  async setStatus(id: string, status: 'acknowledged' | 'resolved', actor: string, note: string | null): Promise<FindingRecord> {
    const prev = await this.get(id);
    if (prev.status === 'resolved') throw new ValidationError(`finding "${id}" is resolved already`);
    const f = await this.d.store.setFindingStatus(id, status, actor, this.d.clock.now(), note);
    if (!f) throw new NotFoundError(`no finding "${id}"`);
    this.d.audit.record({
      type: status === 'resolved' ? 'finding.resolved' : 'finding.acknowledged', actor, subject: f.nhiId,
      data: { finding_id: id, detection: f.detection, key: f.key, note },
    });
    // The NHI's risk score may drop: governance rescores it, here and (through this event) where it runs.
    this.d.onRiskInput?.(f.nhiId);
    // Not awaited: an operator's change is answered once durable, whatever the bus.
    void this.d.bus.publish(FINDING_STATUS_CHANGED, { id: f.id, nhi: f.nhiId, detection: f.detection, status: f.status }, { id: `${f.id}:${status}` })
      .catch((err: unknown) => this.d.logger.warn({ err }, 'finding.status_changed not published'));
    return f;
  }

  async mute(input: { nhiId: string; detection: string; until: number; reason: string }, actor: string): Promise<MuteRecord> {
    if (!DETECTIONS.includes(input.detection as DetectionName)) throw new ValidationError(`no detection "${input.detection}" (have: ${DETECTIONS.join(', ')})`);
    const now = this.d.clock.now();
    if (input.until <= now) throw new ValidationError('the mute must end in the future');
    const m: MuteRecord = { id: newId('mute'), nhiId: input.nhiId, detection: input.detection as DetectionName, until: input.until, reason: input.reason, createdBy: actor, createdAt: now };
    await this.d.store.addMute(m);
    this.mutes = undefined;
    this.d.audit.record({ type: 'detection.muted', actor, subject: m.nhiId, data: { mute_id: m.id, detection: m.detection, until: m.until, reason: m.reason } });
    return m;
  }

  async unmute(id: string, actor: string): Promise<void> {
    if (!(await this.d.store.deleteMute(id))) throw new NotFoundError(`no mute "${id}"`);
    this.mutes = undefined;
    this.d.audit.record({ type: 'detection.unmuted', actor, data: { mute_id: id } });
  }

  listMutes(activeOnly: boolean): Promise<MuteRecord[]> {
    return this.d.store.listMutes(activeOnly ? { activeAt: this.d.clock.now() } : {});
  }

  private async isMuted(nhiId: string, detection: DetectionName, at: number): Promise<boolean> {
    const now = this.d.clock.now();
    // Mutes are few and change rarely; other instances' mutes are seen within MUTE_CACHE_MS.
    if (!this.mutes || now - this.mutes.at > MUTE_CACHE_MS || now < this.mutes.at) this.mutes = { at: now, list: await this.d.store.listMutes({ activeAt: now }) };
    return this.mutes.list.some((m) => m.nhiId === nhiId && m.detection === detection && m.until > at);
  }
}
