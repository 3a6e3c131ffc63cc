import { ReplicatedMap, type Bus, type Clock, type Logger, type Subscription } from '../core/index.js';
import type { EnforcementStore, KillSwitchRecord, RevocationRecord } from './ports.js';
import { LINEAGE_SEPARATOR } from '../jose/index.js';

/** Bus subjects for revocation state. Payloads are the store records (no secrets). */
export const REVOCATION_SUBJECTS = {
  added: 'revocation.added',
  killAdded: 'kill.added',
  killLifted: 'kill.lifted',
} as const;

/** What a check needs to know about a token. */
export interface TokenFacts {
  /** A token obtained by exchange names its ancestors in its jti (`own.parent.grandparent…`, tokens.ts). */
  jti: string;
  nhiId: string;
  toolId: string;
  /** Epoch ms (the token's `iat` × 1000). */
  issuedAt: number;
  /**
   * A delegated token's actors (RFC 8693 §4.1 `act`, the current one first, then the prior
   * chain), each with the jti of the Mandate token it presented when it had one: a token acting
   * for someone stops when its actor is killed, revoked NHI-wide after it was issued, or the
   * actor's own token is revoked.
   */
  actors?: readonly ActorFacts[];
}

export interface ActorFacts {
  sub: string;
  /** The Mandate token the actor presented (`act.mandate_jti`), when it was one. */
  jti?: string;
}

/** Longer `act` chains than this are not read (the broker never issues one: exchange depth is capped lower). */
const MAX_ACTORS = 8;
const NO_ACTORS: readonly ActorFacts[] = [];

/** The actors of an `act` claim, current first (RFC 8693 §4.1: prior actors nest inside). */
export function actorsOf(act: unknown): readonly ActorFacts[] {
  if (act === undefined || act === null) return NO_ACTORS;
  const out: ActorFacts[] = [];
  let a = act as Record<string, unknown> | undefined;
  while (a !== undefined && a !== null && typeof a === 'object' && out.length < MAX_ACTORS) {
    if (typeof a.sub === 'string') out.push(typeof a.mandate_jti === 'string' ? { sub: a.sub, jti: a.mandate_jti } : { sub: a.sub });
    a = a.act as Record<string, unknown> | undefined;
  }
  return out;
}

/** What the revocation check needs of a verified Mandate token at one tool. */
export function tokenFacts(claims: { jti: string; sub: string; iat: number; act?: unknown }, toolId: string): TokenFacts {
  const actors = actorsOf(claims.act);
  return { jti: claims.jti, nhiId: claims.sub, toolId, issuedAt: claims.iat * 1000, ...(actors.length > 0 ? { actors } : {}) };
}

/**
 * Kill switch records have no signal column: a kill a signal engaged says so at the start of
 * its reason (`[signal <id>] …`, written by src/signals/signals.ts).
 */
export const KILL_SIGNAL_PREFIX = /^\[signal ([A-Za-z0-9_-]+)\] /;

/**
 * The periodic reload (the safety net under the bus: a revocation whose message was lost, e.g.
 * published during a NATS outage longer than the publish timeout) reads only the revocations
 * created since the previous reload, minus this overlap, and everything every
 * FULL_RELOAD_INTERVAL_MS. A revocation is written right after its createdAt is taken (a signal
 * batch retried after a failure is stamped again), so one committed more than the overlap after
 * its createdAt, or stamped by an instance whose clock is that far behind, is still found by the
 * next full reload. Reading every unexpired revocation every 5 s cost ~5 µs of CPU per row
 * (plus the database's): at a sustained 100 revocations a second, with revocations kept for
 * tokens.max_ttl (1 h by default), 366 000 rows, ~1.8 s of CPU per reload per instance.
 */
export const RELOAD_OVERLAP_MS = 10_000;
export const FULL_RELOAD_INTERVAL_MS = 60_000;

export type RevokedReason = 'token_revoked' | 'ancestor_revoked' | 'actor_revoked' | 'nhi_revoked' | 'tool_revoked' | 'global_revoked' | 'nhi_killed' | 'tool_killed' | 'global_kill';

/**
 * The in-memory revocation set every broker and proxy instance consults on every request:
 * revoked jtis, per-NHI / per-tool / global not-before instants, active kill switches, and the
 * signing keys retired at once (`mandate keys retire --now`). The store is the truth; the bus
 * brings changes in milliseconds; a periodic reload from the store catches anything a
 * disconnected instance missed. Checks are O(1) map lookups.
 *
 * Each part is a {@link ReplicatedMap} (core/replicated-view.ts: snapshot + deltas, the newer
 * wins). Revocations only ever grow (a jti stays revoked, a not-before only moves later), so
 * their version is the value itself and a reload's rows are merged as deltas. Kill switches come
 * and go: a kill's version is 0 while engaged and 1 once lifted, each reload is a complete
 * snapshot of the active ones started before the read, so a kill engaged (or lifted) while a
 * reload is in flight is kept over the older rows the reload read.
 */
export class RevocationState {
  private readonly tokens = new ReplicatedMap<string, number>({ version: (expiresAt) => expiresAt }); // jti → expiresAt (ms), for pruning
  private readonly nhiNotBefore = new ReplicatedMap<string, number>({ version: (notBefore) => notBefore });
  private readonly toolNotBefore = new ReplicatedMap<string, number>({ version: (notBefore) => notBefore });
  // One key, kept as a number for check()'s sake: the same rule (the later not-before wins).
  private globalNotBefore = 0;
  private readonly kills = new ReplicatedMap<string, KillSwitchRecord>({ version: (k) => (k.liftedAt === null ? 0 : 1) });
  /** Signing keys retired at once: kid → when the revocation may be forgotten. */
  private readonly retiredKeys = new ReplicatedMap<string, number>({ version: (expiresAt) => expiresAt });
  private readonly keyListeners: Array<(kid: string) => void> = [];
  // Which signal stands behind each entry above, read only on the deny path (signalOf), so that
  // check() stays a set of plain lookups.
  private readonly tokenSignal = new Map<string, string>();
  private readonly nhiSignal = new Map<string, string>();
  private readonly toolSignal = new Map<string, string>();
  private globalSignal: string | undefined;
  /** False until the first reload: what is already in force at start-up is not "applied now". */
  private reporting = false;
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Epoch ms of the last successful reload from the store. */
  lastSyncAt = 0;
  /** Epoch ms of the last successful reload that read every unexpired revocation. */
  private lastFullAt = 0;

  constructor(
    private readonly deps: {
      store: Pick<EnforcementStore, 'listRevocations' | 'listKillSwitches'>; bus: Bus; clock: Clock; logger: Logger; reloadIntervalMs?: number;
      /** How often the reload reads every unexpired revocation rather than the recent ones (default FULL_RELOAD_INTERVAL_MS). */
      fullReloadIntervalMs?: number;
      /** Time to revoke: called once per record carrying a signal, when this instance first applies it. */
      onSignalApplied?: (signalId: string, at: number) => void;
    },
  ) {}

  async start(): Promise<void> {
    this.subs.push(
      await this.deps.bus.subscribe('revocation.>', (m) => this.applyRevocation(m.data as RevocationRecord), { name: 'revocation-state' }),
      await this.deps.bus.subscribe('kill.>', (m) => this.applyKill(m.data as KillSwitchRecord), { name: 'kill-state' }),
    );
    await this.reload();
    this.reporting = true;
    const every = this.deps.reloadIntervalMs ?? 5000;
    this.timer = setInterval(() => void this.reload().catch((err: unknown) => this.deps.logger.warn({ err }, 'revocation reload failed')), every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.subs.map((s) => s.close()));
  }

  /**
   * Reloads from the store (the truth): the active kill switches, and the revocations created
   * since the previous reload (RELOAD_OVERLAP_MS before it), or all of them on the first reload,
   * with `full`, and every FULL_RELOAD_INTERVAL_MS.
   */
  async reload(opts: { full?: boolean } = {}): Promise<void> {
    const now = this.deps.clock.now();
    const full = opts.full === true || this.lastFullAt === 0 || now - this.lastFullAt >= (this.deps.fullReloadIntervalMs ?? FULL_RELOAD_INTERVAL_MS);
    const recent = full ? undefined : { createdSince: this.lastSyncAt - RELOAD_OVERLAP_MS };
    // Before the read: a kill engaged or lifted from now on may be missing from what is read.
    const ticket = this.kills.begin();
    let revs: RevocationRecord[];
    let kills: KillSwitchRecord[];
    try {
      [revs, kills] = await Promise.all([this.deps.store.listRevocations(now, recent), this.deps.store.listKillSwitches({ activeOnly: true })]);
    } catch (err) {
      this.kills.abandon(ticket);
      throw err;
    }
    for (const r of revs) this.applyRevocation(r);
    this.kills.install(ticket, kills.map((k) => [k.id, k] as const));
    for (const [jti, exp] of this.tokens.entries()) {
      if (exp <= now) {
        this.tokens.forget(jti);
        this.tokenSignal.delete(jti);
      }
    }
    for (const [kid, exp] of this.retiredKeys.entries()) if (exp <= now) this.retiredKeys.forget(kid);
    if (full) this.lastFullAt = now;
    this.lastSyncAt = now;
  }

  /**
   * Applies a revocation (from the bus, a reload, or this instance's own commit). A record that
   * carries a signal is reported applied (time to revoke) when it changes this instance's state:
   * a jti not yet revoked, a later not-before, or the same not-before from another signal. The
   * bus may deliver a record again (at-least-once) and every reload applies it again; neither
   * changes the state, so neither reports it twice, and no memory is kept per record for that
   * (a map of reported record ids grew by one entry per revocation for tokens.max_ttl: ~12 MB a
   * minute at 2,000 revocations a second, against a 160 MB heap in bench/revocation).
   */
  applyRevocation(r: RevocationRecord): void {
    const sig = r.signalId ?? undefined;
    let changed = false;
    switch (r.kind) {
      case 'token':
        if (r.target) {
          changed = !this.tokens.has(r.target) || (sig !== undefined && this.tokenSignal.get(r.target) !== sig);
          this.tokens.apply(r.target, r.expiresAt ?? Number.MAX_SAFE_INTEGER);
          if (sig) this.tokenSignal.set(r.target, sig);
        }
        break;
      case 'nhi':
        changed = applyNotBefore(this.nhiNotBefore, this.nhiSignal, r, sig);
        break;
      case 'tool':
        changed = applyNotBefore(this.toolNotBefore, this.toolSignal, r, sig);
        break;
      case 'global':
        if (r.notBefore !== null && r.notBefore >= this.globalNotBefore) {
          changed = r.notBefore > this.globalNotBefore || this.globalSignal !== sig;
          this.globalNotBefore = r.notBefore;
          this.globalSignal = sig;
        }
        break;
      case 'key':
        if (r.target) {
          const known = this.retiredKeys.has(r.target);
          this.retiredKeys.apply(r.target, r.expiresAt ?? Number.MAX_SAFE_INTEGER);
          if (!known) this.keyRetiredNow(r.target);
        }
        break;
    }
    if (sig && changed) this.report(sig);
  }

  applyKill(k: KillSwitchRecord): void {
    if (k.liftedAt !== null) {
      // Tombstoned: a reload that read the kill before it was lifted does not bring it back.
      this.kills.remove(k.id, 1);
      return;
    }
    // Reported when this instance learns of the kill switch (not again when the bus repeats it;
    // a reload installs the set of kills without reporting, as it always has).
    const known = this.kills.has(k.id);
    const applied = this.kills.apply(k.id, k);
    const sig = KILL_SIGNAL_PREFIX.exec(k.reason ?? '')?.[1];
    if (sig && applied && !known) this.report(sig);
  }

  private keyRetiredNow(kid: string): void {
    for (const fn of this.keyListeners) {
      try {
        fn(kid);
      } catch (err) {
        this.deps.logger.warn({ err, kid }, 'a key retirement was not handed on');
      }
    }
  }

  /** Whether a signing key was retired at once (its tokens are refused, whatever the JWKS says). */
  keyRetired(kid: string): boolean {
    return this.retiredKeys.has(kid);
  }

  /**
   * Called with the kid when this instance first learns that a signing key was retired at once
   * (from the bus, this instance's own commit, or a reload): verified-token caches drop it,
   * verifiers of a fetched JWKS fetch it again, the key manager reloads its keys.
   */
  onKeyRetired(fn: (kid: string) => void): void {
    this.keyListeners.push(fn);
    for (const kid of this.retiredKeys.keys()) fn(kid);
  }

  /** This instance applied what `signalId` caused, now. */
  private report(signalId: string): void {
    // What the first reload finds was applied before this instance started: not "applied now".
    if (!this.deps.onSignalApplied || !this.reporting) return;
    try {
      this.deps.onSignalApplied(signalId, this.deps.clock.now());
    } catch (err) {
      this.deps.logger.warn({ err }, 'signal application not recorded');
    }
  }

  /**
   * The signal behind a refusal `check()` or `killed()` gave, when a signal caused it. Called on
   * the deny path only (time to revoke: the first denial per signal).
   */
  signalOf(reason: RevokedReason, t: Pick<TokenFacts, 'jti' | 'nhiId' | 'toolId'>): string | undefined {
    switch (reason) {
      case 'token_revoked':
        return this.tokenSignal.get(t.jti);
      case 'ancestor_revoked': {
        const ancestor = this.revokedAncestorOf(t.jti);
        return ancestor === undefined ? undefined : this.tokenSignal.get(ancestor);
      }
      case 'nhi_revoked':
        return this.nhiSignal.get(t.nhiId);
      case 'tool_revoked':
        return this.toolSignal.get(t.toolId);
      case 'global_revoked':
        return this.globalSignal;
      default:
        for (const k of this.kills.values()) {
          const hit = (reason === 'global_kill' && k.scope === 'global') || (reason === 'nhi_killed' && k.scope === 'nhi' && k.target === t.nhiId)
            || (reason === 'tool_killed' && k.scope === 'tool' && k.target === t.toolId);
          const sig = hit ? KILL_SIGNAL_PREFIX.exec(k.reason ?? '')?.[1] : undefined;
          if (sig) return sig;
        }
        return undefined;
    }
  }

  /** Why a token may not be used, or undefined when it may. */
  check(t: TokenFacts): RevokedReason | undefined {
    const killed = this.killed(t.nhiId, t.toolId);
    if (killed) return killed;
    if (this.tokens.has(t.jti)) return 'token_revoked';
    // Revoking a jti revokes every token exchanged from it, here and at every instance at once.
    if (this.revokedAncestorOf(t.jti) !== undefined) return 'ancestor_revoked';
    // A token issued in the same millisecond as a revocation is revoked (<=): fail closed.
    if (t.issuedAt <= this.globalNotBefore) return 'global_revoked';
    if (t.issuedAt <= (this.nhiNotBefore.get(t.nhiId) ?? -1)) return 'nhi_revoked';
    if (t.issuedAt <= (this.toolNotBefore.get(t.toolId) ?? -1)) return 'tool_revoked';
    if (t.actors !== undefined) {
      for (const a of t.actors) {
        if (this.killed(a.sub, undefined)) return 'actor_revoked';
        if (a.jti !== undefined && (this.tokens.has(a.jti) || this.revokedAncestorOf(a.jti) !== undefined)) return 'actor_revoked';
        if (t.issuedAt <= (this.nhiNotBefore.get(a.sub) ?? -1)) return 'actor_revoked';
      }
    }
    return undefined;
  }

  /** The nearest revoked ancestor a derived token's jti names (`own.parent.grandparent…`), if any. */
  private revokedAncestorOf(jti: string): string | undefined {
    for (let i = jti.indexOf(LINEAGE_SEPARATOR); i >= 0; i = jti.indexOf(LINEAGE_SEPARATOR, i + 1)) {
      const ancestor = jti.slice(i + 1);
      if (this.tokens.has(ancestor)) return ancestor;
    }
    return undefined;
  }

  /** An active kill switch covering this NHI or tool (or everything). */
  killed(nhiId: string | undefined, toolId: string | undefined): 'global_kill' | 'nhi_killed' | 'tool_killed' | undefined {
    for (const k of this.kills.values()) {
      if (k.scope === 'global') return 'global_kill';
      if (k.scope === 'nhi' && nhiId !== undefined && k.target === nhiId) return 'nhi_killed';
      if (k.scope === 'tool' && toolId !== undefined && k.target === toolId) return 'tool_killed';
    }
    return undefined;
  }

  activeKills(): KillSwitchRecord[] {
    return [...this.kills.values()];
  }
}

/**
 * An NHI- or tool-wide revocation: the target's not-before moves to the record's when that is
 * not earlier, with the signal behind it. True when that changed the state (a later not-before,
 * or the same one from another signal).
 */
function applyNotBefore(notBefore: ReplicatedMap<string, number>, signals: Map<string, string>, r: RevocationRecord, sig: string | undefined): boolean {
  if (!r.target || r.notBefore === null) return false;
  const cur = notBefore.get(r.target);
  if (!notBefore.apply(r.target, r.notBefore)) return false;
  const changed = cur === undefined || r.notBefore > cur || signals.get(r.target) !== sig;
  if (sig) signals.set(r.target, sig);
  else signals.delete(r.target);
  return changed;
}
