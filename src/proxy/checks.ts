import { OAuthError, ReplicatedMap, type ActionConfig, type Bus, type Clock, type MandateConfig } from '../core/index.js';
import type { AccessTokenVerifier, DpopVerifier } from '../jose/index.js';
import {
  actorsOf, describeSignal, type RestrictionLookup, type RevocationState, type RevokedReason, type TokenFacts,
} from '../enforcement/index.js';
import type { InventoryStore, NhiRecord } from '../inventory/index.js';
import { hasMethodOverride, hasMethodOverrideParam } from './actions.js';
import type { Call } from './call.js';
import { ResourceAuthError, TokenChecker, type CheckedToken } from './token-check.js';

const NHI_TTL_MS = 5000;

export interface CheckDeps {
  config: Readonly<MandateConfig>;
  issuer: () => string;
  accessTokens: AccessTokenVerifier;
  dpop: DpopVerifier;
  revocations: RevocationState;
  store: InventoryStore;
  bus: Bus;
  clock: Clock;
  stalenessBoundS: number;
  restrictions?: RestrictionLookup | undefined;
  onRevoked?: ((reason: RevokedReason, t: TokenFacts) => void) | undefined;
}

/**
 * The checks every call passes, HTTP or MCP: the bus fresh enough to know what is revoked, kill
 * switches, request hygiene, the token (with revocation and binding), the NHI and its actors
 * active, the rate limit, then for its action the scope and any step-down or step-up. Each
 * throws the refusal (an OAuthError) that refusals.ts answers.
 */
export class Checks {
  private readonly tokens: TokenChecker;
  /** NHIs read on use (core/replicated-view.ts, cache mode): an `inventory.*` event removes one, and a read that began before it is not kept. */
  private readonly nhis = new ReplicatedMap<string, { nhi: NhiRecord | undefined; at: number }>({ version: () => 0, mode: 'cache' });
  /** Token profile name → its rank (the profile order: least dangerous first), for restrictions. */
  private readonly tierRank = new Map<string, number>();

  constructor(private readonly d: CheckDeps) {
    d.config.tokens.profiles.forEach((p, i) => this.tierRank.set(p.name, i));
    this.tokens = new TokenChecker({ accessTokens: d.accessTokens, dpop: d.dpop, revocations: d.revocations, onRevoked: d.onRevoked });
  }

  /** An NHI changed (disabled, attributes): read it anew on its next call. */
  nhiChanged(id: string): void {
    this.nhis.remove(id);
  }

  busFresh(): void {
    const h = this.d.bus.health();
    if (!h.connected && this.d.clock.now() - h.lastContactAt > this.d.stalenessBoundS * 1000) {
      // Revocations may be arriving that this instance cannot hear: refuse rather than guess.
      throw new OAuthError('temporarily_unavailable', 'this proxy has lost contact with the bus for too long to know what is revoked', 503);
    }
  }

  toolNotKilled(call: Call): void {
    const killed = this.d.revocations.killed(undefined, call.rt.tool.id);
    if (killed) throw new ResourceAuthError('invalid_token', `access revoked: kill switch (${killed})`, 'Bearer');
  }

  /** A method override (header or query parameter) is refused: frameworks would act on another method than the one decided on. */
  noMethodOverride(call: Call): void {
    const override = hasMethodOverride(call.ctx.req.headers) ?? hasMethodOverrideParam(call.rawQuery);
    if (override) throw new OAuthError('invalid_request', `method override (${override}) is refused: send the real method`, 400);
  }

  /** The token for this tool (token-check.ts): signature, iss, aud, exp, typ; the revocation set; the binding. */
  token(call: Call): Promise<CheckedToken> {
    return this.tokens.check(call.ctx.req, call.rt.tool.id, call.rt.resource, `${this.d.issuer()}${call.ctx.path}`);
  }

  /**
   * The token's NHI is active and not killed at this tool; a delegated token acts for its subject
   * through its actors, and each must still be active too (their kills and revocations are in the
   * revocation check). Reads from the NHI cache without waiting when it holds them.
   */
  async nhiActive(call: Call): Promise<void> {
    const token = call.token!;
    const c = token.claims;
    const nhi = this.cachedNhi(c.sub) ?? await this.loadNhi(c.sub);
    if (!nhi.nhi || nhi.nhi.status !== 'active') throw new ResourceAuthError('invalid_token', `the access token was revoked (${c.sub} is disabled)`, token.scheme);
    const nhiKilled = this.d.revocations.killed(c.sub, call.rt.tool.id);
    if (nhiKilled) throw new ResourceAuthError('invalid_token', `the access token was revoked (kill switch: ${nhiKilled})`, token.scheme);
    if (c.act !== undefined) {
      for (const a of actorsOf(c.act)) {
        const actor = this.cachedNhi(a.sub) ?? await this.loadNhi(a.sub);
        if (!actor.nhi || actor.nhi.status !== 'active') throw new ResourceAuthError('invalid_token', `the access token was revoked (its actor ${a.sub} is disabled)`, token.scheme);
      }
    }
    call.nhi = nhi.nhi;
  }

  rateLimit(call: Call): void {
    const rt = call.rt;
    if (!rt.limiter) return;
    const r = rt.limiter.take(call.nhiId!, this.d.clock.now());
    if (!r.ok) throw new OAuthError('rate_limited', `too many calls to ${rt.tool.id}; retry after ${r.retryAfterS}s`, 429, { retry_after: r.retryAfterS });
  }

  /**
   * RFC 6750 §3.1: the action must be one the token was issued for. A step-down
   * narrows that to the actions at or below the fallback tier, for tokens issued before it too.
   */
  inScope(call: Call, action: ActionConfig): void {
    const token = call.token!;
    if (!token.claims.scope.split(' ').includes(action.name)) {
      throw new OAuthError('insufficient_scope', `the access token does not carry ${action.name}`, 403, { scope: action.name });
    }
    const r = this.steppedDownFrom(token, action);
    if (r) {
      throw new OAuthError('insufficient_scope', `${token.claims.sub} was stepped down by ${describeSignal(r)}: only actions at or below the ${r.fallbackTier} tier until an operator restores it`, 403, { scope: action.name, signal_id: r.signalId });
    }
  }

  /**
   * The MCP transport's own operations (the event stream, ending a session) need a token that
   * holds at least one action of this tool the caller may still use: in its scope, declared by
   * the tool, and not above a step-down's fallback tier.
   */
  holdsGrantedAction(call: Call): void {
    const token = call.token!;
    for (const name of token.claims.scope.split(' ')) {
      const action = call.rt.matcher.byName(name);
      if (action && !this.steppedDownFrom(token, action)) return;
    }
    const r = this.d.restrictions?.restrictionOf(token.claims.sub);
    const why = r?.kind === 'step_down' ? ` (${token.claims.sub} was stepped down by ${describeSignal(r)})` : '';
    throw new OAuthError('insufficient_scope', `the access token holds no action of ${call.rt.tool.id} it may use${why}`, 403, { scope: call.rt.tool.actions.map((a) => a.name).join(' ') });
  }

  /** The step-down that takes `action` away from the token's NHI (above its fallback tier), if one does. */
  steppedDownFrom(token: CheckedToken, action: ActionConfig): ReturnType<RestrictionLookup['restrictionOf']> {
    const r = this.d.restrictions?.restrictionOf(token.claims.sub);
    return r?.kind === 'step_down' && this.aboveTier(action, r.fallbackTier) ? r : undefined;
  }

  /** The tier holds the call for a human, or a step-up does for actions above its fallback tier. */
  holdsForTier(call: Call, action: ActionConfig): boolean {
    if (call.rt.approvalTiers.has(action.tier)) return true;
    const r = this.d.restrictions?.restrictionOf(call.token!.claims.sub);
    return r?.kind === 'step_up' && this.aboveTier(action, r.fallbackTier);
  }

  private aboveTier(action: ActionConfig, tier: string): boolean {
    // An unknown tier ranks as the most dangerous: fail closed.
    return (this.tierRank.get(action.tier) ?? Infinity) > (this.tierRank.get(tier) ?? -1);
  }

  /** The NHI cache's entry while fresh (its `nhi` undefined: no such NHI), else undefined. */
  private cachedNhi(id: string): { nhi: NhiRecord | undefined } | undefined {
    const hit = this.nhis.get(id);
    return hit && this.d.clock.now() - hit.at < NHI_TTL_MS ? hit : undefined;
  }

  private async loadNhi(id: string): Promise<{ nhi: NhiRecord | undefined; at: number }> {
    const now = this.d.clock.now();
    const ticket = this.nhis.begin();
    let nhi: NhiRecord | undefined;
    try {
      nhi = await this.d.store.getNhi(id);
    } catch (err) {
      this.nhis.abandon(ticket);
      throw err;
    }
    const entry = { nhi, at: now };
    this.nhis.installOne(ticket, id, entry);
    return entry;
  }
}
