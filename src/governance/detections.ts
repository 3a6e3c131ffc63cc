import type { BusMessage, Bus, Clock, Logger, MandateConfig, Subscription } from '../core/index.js';
import { BoundedMap } from '../core/index.js';
import { grantId, type CredentialRecord, type InventoryStore, type NhiRecord } from '../inventory/index.js';
import { MintingBaseline } from './baseline.js';
import type { Findings } from './findings.js';
import type { GovernanceStore, Severity } from './ports.js';

type Data = Record<string, unknown>;
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const num = (v: unknown, dflt: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : dflt);

/** Owner or system values that name nobody: an NHI so registered has no accountable human. */
const PLACEHOLDERS = new Set(['', '-', '?', 'n/a', 'na', 'none', 'unknown', 'tbd', 'todo', 'nobody', 'null', 'undefined']);
export function isPlaceholder(v: unknown): boolean {
  return typeof v !== 'string' || PLACEHOLDERS.has(v.trim().toLowerCase());
}

/** Denials that are normal protocol flow, not an agent reaching beyond its bounds. */
const BENIGN_DENIALS = new Set(['use_dpop_nonce', 'approval_required', 'authorization_pending', 'slow_down']);

export interface DetectionsDeps {
  config: Readonly<MandateConfig>;
  store: GovernanceStore & Pick<InventoryStore, 'getNhi' | 'listNhis' | 'listCredentials' | 'touchGrant'>;
  bus: Bus;
  findings: Findings;
  clock: Clock;
  logger: Logger;
  /** Called after each event a consumer completed, with its filter (a metrics counter: events absorbed). */
  onEvent?: (filter: string) => void;
  /** An event that can move this NHI's risk score (a denial, an inventory change): the risk feed rescores it. */
  onRiskInput?: (nhiId: string) => void;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const GRANT_TOUCH_FLUSH_MS = 5000;

/**
 * The detections (DETECTIONS in ports.ts): bus consumers over token.issued, token.denied,
 * tool.called, tool.call_denied, inventory.* and shadow_agent, and a periodic sweep over the
 * inventory. Each raises findings through Findings (deduplicated, muted, audited, published).
 * Handlers are idempotent under redelivery: counting state is keyed by the bus message id or
 * the token's jti, and each finding remembers the last event it counted.
 */
export class Detections {
  private readonly subs = new Map<string, Subscription>();
  private readonly baseline: MintingBaseline;
  private readonly issuedSeen = new BoundedMap<string, true>(100_000);
  private readonly denialSeen = new BoundedMap<string, true>(100_000);
  private readonly firedHours = new BoundedMap<string, true>(100_000);
  /** Per NHI: when this process first saw it mint, and the (tool, action) pairs it asked for since. */
  private readonly scopes = new Map<string, { since: number; seen: Set<string> }>();
  /** Per NHI: times of recent denials (the out-of-bounds run). */
  private readonly denials = new Map<string, number[]>();
  /** Per token jti: the proof keys and client addresses it was presented with. */
  private readonly tokenUse = new Map<string, { nhi: string; at: number; jkts: Set<string>; ips: Set<string> }>();
  /** grant id → newest use, written in batches (standing-privilege analysis reads lastUsedAt). */
  private readonly grantUse = new Map<string, number>();
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly profileRank: Map<string, number>;
  private readonly nhiCache = new Map<string, { nhi: NhiRecord | undefined; at: number }>();

  constructor(private readonly d: DetectionsDeps) {
    const m = d.config.governance.minting_rate;
    this.baseline = new MintingBaseline({
      baselineDays: m.baseline_days, minBaselineDays: m.min_baseline_days, minCount: m.min_count, madFactor: m.mad_factor, newHour: m.new_hour,
    });
    this.profileRank = new Map(d.config.tokens.profiles.map((p, i) => [p.name, i]));
  }

  async start(): Promise<void> {
    const since = this.d.clock.now() - (this.d.config.governance.minting_rate.baseline_days + 1) * DAY_MS;
    this.baseline.load(await this.d.store.issuanceByHour(since));
    const counted = this.d.onEvent;
    // A handler returns a promise only when it has I/O to wait for (a finding to raise, an NHI
    // to look up); the common event is handled synchronously, so the bus needs no promise for it.
    const on = async (filter: string, fn: (m: BusMessage) => Promise<void> | void) => {
      const handler = counted ? (m: BusMessage): Promise<void> | void => {
        const r = fn(m);
        if (r) return r.then(() => counted(filter));
        counted(filter);
      } : fn;
      this.subs.set(filter, await this.d.bus.subscribe(filter, handler, { name: `governance-${filter}` }));
    };
    await on('token.issued', (m) => this.onIssued(m));
    await on('token.denied', (m) => this.onTokenDenied(m));
    await on('tool.called', (m) => this.onToolCall(m, false));
    await on('tool.call_denied', (m) => this.onToolCall(m, true));
    await on('inventory.>', (m) => this.onInventory(m));
    await on('shadow_agent', (m) => this.onShadow(m));
    this.flushTimer = setInterval(() => void this.flushGrantUse().catch((err: unknown) => this.d.logger.warn({ err }, 'grant use not written')), GRANT_TOUCH_FLUSH_MS);
    this.flushTimer.unref();
  }

  async stop(): Promise<void> {
    for (const s of this.subs.values()) await s.close();
    this.subs.clear();
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flushGrantUse().catch((err: unknown) => this.d.logger.warn({ err }, 'grant use not written'));
  }

  /** The bus sequence the consumer of `filter` has completed (0 when none): lets callers wait for it to catch up. */
  lastSeq(filter: string): number {
    return this.subs.get(filter)?.lastSeq ?? 0;
  }

  /** Writes the batched grant uses (lastUsedAt moves forward only). */
  async flushGrantUse(): Promise<void> {
    const batch = [...this.grantUse];
    this.grantUse.clear();
    for (const [id, at] of batch) await this.d.store.touchGrant(id, at);
  }

  // ------------------------------------------------------------------ token.issued

  private async onIssued(m: BusMessage): Promise<void> {
    const e = m.data as Data;
    const nhi = str(e.nhi);
    const jti = str(e.jti);
    const tool = str(e.tool);
    if (!nhi || !jti || !tool) return;
    const at = num(e.at, m.publishedAt);
    if (this.issuedSeen.add(jti, true)) this.baseline.record(nhi, at);

    // Minting rate: once per NHI, hour and kind (a spike is one finding per anomalous hour).
    const v = this.baseline.evaluate(nhi, at);
    if (v && this.firedHours.add(`${nhi}:${v.hour}:${v.kind}`, true)) {
      const spike = v.kind === 'spike';
      await this.d.findings.raise({
        nhiId: nhi, detection: 'minting_rate', key: v.kind, severity: spike ? (v.count > 3 * v.threshold ? 'high' : 'medium') : 'medium',
        title: spike
          ? `${nhi} minted ${v.count} tokens in the ${pad(v.hourOfDay)}:00 UTC hour (usual ${v.median}, threshold ${round(v.threshold)})`
          : `${nhi} minted tokens at ${pad(v.hourOfDay)}:00 UTC, an hour it never used`,
        evidence: {
          hour_utc: v.hourOfDay, hour_start: v.hour * HOUR_MS, count: v.count, history_same_hour: v.history, median: v.median, mad: v.mad,
          threshold: round(v.threshold), last_jti: jti, tool,
        },
        at, eventId: `${nhi}:${v.hour}:${v.kind}`,
      });
    }

    // Unusual scope: above the NHI's permission tier (always), or never asked for before (after learning).
    const record = await this.nhi(nhi);
    const scope = Array.isArray(e.scope) ? e.scope.filter((x): x is string => typeof x === 'string') : [];
    const tier = str(e.tier);
    if (record && tier && (this.profileRank.get(tier) ?? 0) > this.allowedRank(record.tier)) {
      await this.d.findings.raise({
        nhiId: nhi, detection: 'unusual_scope', key: `tier:${tool}:${tier}`, severity: 'high',
        title: `${nhi} (tier ${record.tier}) was issued a ${tier} token for ${tool}`,
        evidence: { nhi_tier: record.tier, token_tier: tier, tool, scope, jti },
        at, eventId: m.id,
      });
    }
    let known = this.scopes.get(nhi);
    if (!known) this.scopes.set(nhi, (known = { since: at, seen: new Set() }));
    const learned = at - known.since >= this.d.config.governance.unusual_scope.learning_period * 1000;
    const fresh = scope.filter((a) => !known.seen.has(`${tool}:${a}`));
    for (const a of fresh) known.seen.add(`${tool}:${a}`);
    if (learned && fresh.length > 0) {
      for (const a of fresh) {
        await this.d.findings.raise({
          nhiId: nhi, detection: 'unusual_scope', key: `scope:${tool}:${a}`, severity: 'medium',
          title: `${nhi} asked for ${tool}.${a} for the first time`,
          evidence: { tool, action: a, scope, requested_scope: e.requested_scope ?? null, tier, jti, known_since: known.since },
          at, eventId: m.id,
        });
      }
    }
  }

  private allowedRank(nhiTier: string): number {
    if (nhiTier === 'admin') return Number.POSITIVE_INFINITY;
    // An NHI of tier read may hold read tokens, write up to write; a profile not named after a tier counts by position.
    return this.profileRank.get(nhiTier) ?? (nhiTier === 'read' ? 0 : 1);
  }

  // ------------------------------------------------------------------ denials

  private async onTokenDenied(m: BusMessage): Promise<void> {
    const e = m.data as Data;
    const nhi = str(e.nhi);
    if (!nhi) return;
    this.d.onRiskInput?.(nhi);
    const at = num(e.at, m.publishedAt);
    const error = str(e.error) ?? '';
    const reason = str(e.reason) ?? '';
    if (error === 'invalid_scope' && reason.includes('holds no grant')) {
      await this.d.findings.raise({
        nhiId: nhi, detection: 'out_of_bounds', key: 'no_grant', severity: 'medium',
        title: `${nhi} asked for a token it holds no grant for`,
        evidence: { where: 'broker', error, reason, grant_type: e.grant_type ?? null },
        at, eventId: m.id,
      });
    }
    await this.countDenial(m, nhi, at, 'broker', error);
  }

  /**
   * An allowed call (the proxy's hot path: one per request) is O(1) in-memory work: the grant's
   * newest use (written in batches) and the token's use; it returns a promise only when it
   * raises a finding.
   */
  private onToolCall(m: BusMessage, denied: boolean): Promise<void> | void {
    const e = m.data as Data;
    const nhi = str(e.nhi);
    const tool = str(e.tool);
    const jti = str(e.jti);
    const at = num(e.at, m.publishedAt);
    if (!nhi || !tool) return;
    if (denied) return this.onToolCallDenied(m, e, nhi, tool, jti, at);
    const grant = grantId(nhi, tool);
    if (at > (this.grantUse.get(grant) ?? 0)) this.grantUse.set(grant, at);
    if (jti) return this.tokenSeen(m, e, nhi, jti, at);
  }

  private async onToolCallDenied(m: BusMessage, e: Data, nhi: string, tool: string, jti: string | null, at: number): Promise<void> {
    this.d.onRiskInput?.(nhi);
    const error = str(e.error) ?? '';
    const reason = str(e.reason) ?? '';
    const proofJkt = str(e.proof_jkt);
    const cnfJkt = str(e.cnf_jkt);
    // Stolen-token use: a bound token at the wrong place or with the wrong (or no) proof.
    let theft: { how: string; severity: Severity } | undefined;
    if (jti) {
      if (cnfJkt && proofJkt && proofJkt !== cnfJkt) theft = { how: "presented with another key's DPoP proof", severity: 'critical' };
      else if (reason.includes('DPoP-bound') || (cnfJkt && error === 'invalid_dpop_proof' && !proofJkt)) theft = { how: 'presented without its DPoP proof', severity: 'high' };
      else if (reason.includes('certificate-bound')) theft = { how: 'presented over another client certificate', severity: 'critical' };
      else if (reason.includes('for another tool')) theft = { how: 'presented at another tool', severity: 'high' };
    }
    if (theft) {
      await this.d.findings.raise({
        nhiId: nhi, detection: 'stolen_token', key: `jti:${jti}`, severity: theft.severity,
        title: `a token of ${nhi} was ${theft.how} (${tool})`,
        evidence: { jti, how: theft.how, tool, error, reason, cnf_jkt: cnfJkt, proof_jkt: proofJkt, client_ip: str(e.client_ip), path: e.path ?? null },
        at, eventId: m.id,
      });
    }
    // After the refusal's own finding, so that its evidence says how (a repeat of the same event is not counted twice).
    if (jti) await this.tokenSeen(m, e, nhi, jti, at);
    // Out of bounds: an endpoint or MCP tool the tool does not declare, or an action outside the token.
    const undeclared = reason.startsWith('no declared action') || reason.includes('declares no tool named');
    if (undeclared || error === 'insufficient_scope') {
      const action = str(e.action);
      await this.d.findings.raise({
        nhiId: nhi, detection: 'out_of_bounds', key: undeclared ? `undeclared:${tool}` : `scope:${tool}:${action ?? '?'}`, severity: 'medium',
        title: undeclared ? `${nhi} called an endpoint ${tool} does not declare` : `${nhi} called ${tool}.${action ?? '?'} without holding it`,
        evidence: { where: 'proxy', tool, method: e.method ?? null, path: e.path ?? null, action, error, reason, jti },
        at, eventId: m.id,
      });
    }
    await this.countDenial(m, nhi, at, 'proxy', error);
  }

  /** A run of denials within the window is one finding per run. */
  private async countDenial(m: BusMessage, nhi: string, at: number, where: string, error: string): Promise<void> {
    if (BENIGN_DENIALS.has(error) || !this.denialSeen.add(m.id, true)) return;
    const { denials: n, window } = this.d.config.governance.out_of_bounds;
    const list = (this.denials.get(nhi) ?? []).filter((t) => t > at - window * 1000);
    list.push(at);
    this.denials.set(nhi, list);
    if (list.length < n) return;
    this.denials.set(nhi, []);
    await this.d.findings.raise({
      nhiId: nhi, detection: 'out_of_bounds', key: 'denial_run', severity: 'medium',
      title: `${nhi} was refused ${list.length} times within ${window}s`,
      evidence: { denials: list.length, window_s: window, first_at: list[0], last_at: at, last_where: where, last_error: error },
      at, eventId: m.id,
    });
  }

  /** One jti from two proof keys or two client addresses: the token is in two hands. */
  private tokenSeen(m: BusMessage, e: Data, nhi: string, jti: string, at: number): Promise<void> | void {
    const windowMs = this.d.config.governance.stolen_token.window * 1000;
    let u = this.tokenUse.get(jti);
    if (!u || at - u.at > windowMs) {
      u = { nhi, at, jkts: new Set(), ips: new Set() };
      this.tokenUse.set(jti, u);
      if (this.tokenUse.size > 100_000) this.pruneTokenUse(at - windowMs);
    }
    const jkt = str(e.proof_jkt);
    const ip = str(e.client_ip);
    const newKey = jkt !== null && !u.jkts.has(jkt) && u.jkts.size > 0;
    const newIp = ip !== null && !u.ips.has(ip) && u.ips.size > 0;
    if (jkt) u.jkts.add(jkt);
    if (ip) u.ips.add(ip);
    if (!newKey && !newIp) return;
    return this.d.findings.raise({
      nhiId: nhi, detection: 'stolen_token', key: `jti:${jti}`, severity: 'critical',
      title: `one token of ${nhi} was used from ${newKey ? 'two DPoP keys' : 'two client addresses'}`,
      evidence: { jti, proof_jkts: [...u.jkts], client_ips: [...u.ips], tool: e.tool ?? null, first_use_at: u.at },
      at, eventId: m.id,
    }).then(() => undefined);
  }

  private pruneTokenUse(before: number): void {
    for (const [k, u] of this.tokenUse) if (u.at < before) this.tokenUse.delete(k);
  }

  // ------------------------------------------------------------------ inventory and shadow agents

  private async onInventory(m: BusMessage): Promise<void> {
    const e = m.data as Data;
    const type = str(e.type);
    const nhi = str(e.nhi);
    if (nhi) {
      this.nhiCache.delete(nhi);
      this.d.onRiskInput?.(nhi);
    }
    const at = num(e.at, m.publishedAt);
    if (!type || !nhi) return;
    if (type === 'grant.added' || type === 'grant.changed') {
      const added = Array.isArray(e.added_actions) ? e.added_actions.filter((x): x is string => typeof x === 'string') : [];
      if (added.length === 0) return;
      const source = str(e.source) ?? 'api';
      const changeRef = str(e.change_ref);
      // A reviewed change (config with a change reference) is how grants should arrive.
      if (source === 'config' && changeRef) return;
      let severity: Severity = source === 'api' ? (changeRef ? 'medium' : 'high') : 'low';
      if (added.includes('*') && severity !== 'high') severity = severity === 'low' ? 'medium' : 'high';
      await this.d.findings.raise({
        nhiId: nhi, detection: 'new_grant', key: `grant:${str(e.tool) ?? '?'}`, severity,
        title: `${nhi} was ${type === 'grant.added' ? 'granted' : 'widened on'} ${str(e.tool) ?? '?'} (${added.join(', ')}) through ${source === 'api' ? 'the admin API' : 'config'}${changeRef ? '' : ' without a change reference'}`,
        evidence: { tool: e.tool ?? null, added_actions: added, actions: e.actions ?? null, source, change_ref: changeRef, actor: e.actor ?? null, grant_id: e.grant_id ?? null },
        at, eventId: m.id,
      });
      return;
    }
    if (type === 'nhi.created') {
      const rec = await this.nhi(nhi);
      if (rec && (isPlaceholder(rec.owner) || isPlaceholder(rec.system))) await this.unowned(nhi, 'nhi', { owner: rec.owner, system: rec.system }, at, m.id);
      return;
    }
    if (type === 'credential.added') {
      const rec = await this.nhi(nhi);
      if (rec && (isPlaceholder(rec.owner) || isPlaceholder(rec.system))) {
        const cred = (e.credential ?? {}) as Data;
        await this.unowned(nhi, `credential:${str(cred.id) ?? '?'}`, { owner: rec.owner, system: rec.system, credential: str(cred.id), type: str(cred.type) }, at, m.id);
      }
    }
  }

  private async unowned(nhi: string, what: string, rec: Data, at: number, eventId: string): Promise<void> {
    await this.d.findings.raise({
      nhiId: nhi, detection: 'shadow_agent', key: `unowned:${what}`, severity: 'medium',
      title: what === 'nhi' ? `${nhi} was registered without an owner or system` : `a credential was added to ${nhi}, which has no owner or system`,
      evidence: { owner: rec.owner ?? null, system: rec.system ?? null, credential: rec.credential ?? null, type: rec.type ?? null },
      at, eventId,
    });
  }

  private async onShadow(m: BusMessage): Promise<void> {
    const e = m.data as Data;
    const trust = str(e.trust);
    const subject = str(e.workload_subject);
    if (!trust || !subject) return;
    await this.d.findings.raise({
      // No NHI answers for it: the finding is filed under the workload it names.
      nhiId: `shadow:${trust}`, detection: 'shadow_agent', key: `workload:${subject}`, severity: 'high',
      title: `a workload of ${trust} (${subject.slice(0, 100)}) asked for tokens but maps to no NHI`,
      evidence: { trust, issuer: e.issuer ?? null, workload_subject: subject },
      at: num(e.at, m.publishedAt), eventId: m.id,
    });
  }

  // ------------------------------------------------------------------ the sweep

  /**
   * Stale or risky credentials: static secrets past their exception, credentials not rotated
   * within the policy, anything stored that lives longer than the lifetime bound. Counted once
   * per sweep round (the round is the idempotence key). Returns the number of findings raised.
   */
  async sweep(): Promise<number> {
    const now = this.d.clock.now();
    const { rotation_max_age, max_lifetime } = this.d.config.governance.credentials;
    const round = `sweep:${Math.floor(now / (this.d.config.governance.sweep_interval * 1000))}`;
    const active = new Set((await this.d.store.listNhis({ status: 'active' })).map((n) => n.id));
    let raised = 0;
    const raise = async (c: CredentialRecord, key: string, severity: Severity, title: string, evidence: Data) => {
      const r = await this.d.findings.raise({
        nhiId: c.nhiId, detection: 'stale_credential', key: `${key}:${c.id}`, severity, title,
        evidence: { credential: c.id, type: c.type, created_at: c.createdAt, last_rotated_at: c.lastRotatedAt, ...evidence }, at: now, eventId: round,
      });
      if (r && r.outcome !== 'duplicate') raised++;
    };
    for (const c of await this.d.store.listCredentials()) {
      if (!active.has(c.nhiId) || c.type === 'federated') continue;
      if (c.type === 'static_secret' && c.exceptionExpiresAt !== null && c.exceptionExpiresAt < now) {
        await raise(c, 'exception_expired', 'high', `static secret ${c.id} of ${c.nhiId} is past its exception (${c.exceptionTicket ?? 'no ticket'})`, {
          exception_ticket: c.exceptionTicket, exception_expires_at: c.exceptionExpiresAt, overdue_days: Math.floor((now - c.exceptionExpiresAt) / DAY_MS),
        });
      }
      const age = now - (c.lastRotatedAt ?? c.createdAt);
      if (age > rotation_max_age * 1000) {
        await raise(c, 'rotation', 'medium', `${c.type} ${c.id} of ${c.nhiId} was not rotated for ${Math.floor(age / DAY_MS)} days`, {
          age_days: Math.floor(age / DAY_MS), rotation_max_age_days: Math.floor(rotation_max_age / 86_400),
        });
      }
      const lived = now - c.createdAt;
      if (lived > max_lifetime * 1000) {
        await raise(c, 'long_lived', 'low', `${c.type} ${c.id} of ${c.nhiId} has lived ${Math.floor(lived / HOUR_MS)} h (bound ${Math.floor(max_lifetime / 3600)} h)`, {
          lived_hours: Math.floor(lived / HOUR_MS), max_lifetime_hours: Math.floor(max_lifetime / 3600),
        });
      }
    }
    this.baseline.prune(now);
    return raised;
  }

  private async nhi(id: string): Promise<NhiRecord | undefined> {
    const now = this.d.clock.now();
    const hit = this.nhiCache.get(id);
    if (hit && Math.abs(now - hit.at) < 5000) return hit.nhi;
    const nhi = await this.d.store.getNhi(id);
    this.nhiCache.set(id, { nhi, at: now });
    return nhi;
  }
}

function pad(h: number): string {
  return String(h).padStart(2, '0');
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
