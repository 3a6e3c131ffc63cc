import type { Bus, Clock, Logger, Subscription } from '../core/index.js';
import type { BrokerStore, KillSwitchRecord, RevocationRecord } from './ports.js';

/** Bus subjects for revocation state. Payloads are the store records (no secrets). */
export const REVOCATION_SUBJECTS = {
  added: 'revocation.added',
  killAdded: 'kill.added',
  killLifted: 'kill.lifted',
} as const;

/** What a check needs to know about a token. */
export interface TokenFacts {
  jti: string;
  nhiId: string;
  toolId: string;
  /** Epoch ms (the token's `iat` × 1000). */
  issuedAt: number;
}

export type RevokedReason = 'token_revoked' | 'nhi_revoked' | 'tool_revoked' | 'global_revoked' | 'nhi_killed' | 'tool_killed' | 'global_kill';

/**
 * The in-memory revocation set every broker and proxy instance consults on every request:
 * revoked jtis, per-NHI / per-tool / global not-before instants, and active kill switches.
 * The store is the truth; the bus brings changes in milliseconds; a periodic reload from the
 * store catches anything a disconnected instance missed. Checks are O(1) map lookups.
 */
export class RevocationState {
  private readonly tokens = new Map<string, number>(); // jti → expiresAt (ms), for pruning
  private readonly nhiNotBefore = new Map<string, number>();
  private readonly toolNotBefore = new Map<string, number>();
  private globalNotBefore = 0;
  private kills = new Map<string, KillSwitchRecord>();
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Epoch ms of the last successful reload from the store. */
  lastSyncAt = 0;

  constructor(
    private readonly deps: { store: BrokerStore; bus: Bus; clock: Clock; logger: Logger; reloadIntervalMs?: number },
  ) {}

  async start(): Promise<void> {
    this.subs.push(
      await this.deps.bus.subscribe('revocation.>', (m) => this.applyRevocation(m.data as RevocationRecord), { name: 'revocation-state' }),
      await this.deps.bus.subscribe('kill.>', (m) => this.applyKill(m.data as KillSwitchRecord), { name: 'kill-state' }),
    );
    await this.reload();
    const every = this.deps.reloadIntervalMs ?? 5000;
    this.timer = setInterval(() => void this.reload().catch((err: unknown) => this.deps.logger.warn({ err }, 'revocation reload failed')), every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.subs.map((s) => s.close()));
  }

  /** Reloads everything from the store (the truth). */
  async reload(): Promise<void> {
    const now = this.deps.clock.now();
    const [revs, kills] = await Promise.all([this.deps.store.listRevocations(now), this.deps.store.listKillSwitches({ activeOnly: true })]);
    for (const r of revs) this.applyRevocation(r);
    this.kills = new Map(kills.map((k) => [k.id, k]));
    for (const [jti, exp] of this.tokens) if (exp <= now) this.tokens.delete(jti);
    this.lastSyncAt = now;
  }

  applyRevocation(r: RevocationRecord): void {
    switch (r.kind) {
      case 'token':
        if (r.target) this.tokens.set(r.target, r.expiresAt ?? Number.MAX_SAFE_INTEGER);
        break;
      case 'nhi':
        if (r.target && r.notBefore !== null) this.nhiNotBefore.set(r.target, Math.max(this.nhiNotBefore.get(r.target) ?? 0, r.notBefore));
        break;
      case 'tool':
        if (r.target && r.notBefore !== null) this.toolNotBefore.set(r.target, Math.max(this.toolNotBefore.get(r.target) ?? 0, r.notBefore));
        break;
      case 'global':
        if (r.notBefore !== null) this.globalNotBefore = Math.max(this.globalNotBefore, r.notBefore);
        break;
    }
  }

  applyKill(k: KillSwitchRecord): void {
    if (k.liftedAt !== null) this.kills.delete(k.id);
    else this.kills.set(k.id, k);
  }

  /** Why a token may not be used, or undefined when it may. */
  check(t: TokenFacts): RevokedReason | undefined {
    const killed = this.killed(t.nhiId, t.toolId);
    if (killed) return killed;
    if (this.tokens.has(t.jti)) return 'token_revoked';
    // A token issued in the same millisecond as a revocation is revoked (<=): fail closed.
    if (t.issuedAt <= this.globalNotBefore) return 'global_revoked';
    if (t.issuedAt <= (this.nhiNotBefore.get(t.nhiId) ?? -1)) return 'nhi_revoked';
    if (t.issuedAt <= (this.toolNotBefore.get(t.toolId) ?? -1)) return 'tool_revoked';
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
