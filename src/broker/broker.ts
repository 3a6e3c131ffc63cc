import { KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import {
  OAuthError, newId, oauth, readBody, resolveSecret, secretEquals, sendJson,
  type AuditSink, type Bus, type Clock, type Logger, type MandateConfig, type ReplayStore, type RequestContext, type Router, type ToolConfig,
} from '../core/index.js';
import type { InventoryStore, NhiRecord } from '../inventory/index.js';
import type { KeyManager } from '../keys/index.js';
import type { BrokerBatchStore, BrokerStore, ApprovalRecord, KillSwitchRecord, RestrictionLookup, RevocationRecord } from './ports.js';
import { describeSignal } from './signal-note.js';
import { AccessTokenVerifier } from './access-token.js';
import { KILL_SIGNAL_PREFIX, RevocationState } from './revocation-state.js';
import { GRANT, TOKEN_TYPE, ToolCatalog, newJti, parseScope, sha256b64u, type AccessTokenClaims } from './tokens.js';
import { DpopVerifier } from './dpop.js';
import { DpopNonces } from './dpop-nonce.js';
import { ClientAssertionVerifier } from './client-assertion.js';
import { FederationVerifier, ShadowAgentError, nhiMatcher, type VerifiedWorkload } from './federation.js';
import { JwksFetcher } from './jwks-fetcher.js';
import { OutboundGuard } from '../core/outbound.js';
import { ReplayBatcher } from './replay-batcher.js';
import { IssuedTokenWriter } from './issued-tokens.js';
import { InventoryView } from './inventory-view.js';
import { signCompactAsync } from './jws.js';

export interface BrokerDeps {
  config: Readonly<MandateConfig>;
  /** The issuer URL (RFC 8414 §2): the public URL, known once the server listens (construct the broker after). */
  issuer: () => string;
  keys: KeyManager;
  /** `BrokerBatchStore`'s methods, when present, batch the hot writes (group commit). */
  store: BrokerStore & InventoryStore & ReplayStore & Partial<BrokerBatchStore>;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  /** Derived from the KEK, so every instance accepts every other's DPoP nonces. */
  nonceSecret: Uint8Array;
  env?: NodeJS.ProcessEnv;
  /** The guard for JWKS and discovery fetches (src/core/outbound.ts); a strict one when absent. */
  outbound?: OutboundGuard;
  /** Step-down / step-up restrictions from signals (issue 5); none when absent. */
  restrictions?: RestrictionLookup;
  /** Time to revoke (issue 5): this instance applied a revocation or kill switch a signal caused. */
  onSignalApplied?: (signalId: string, at: number) => void;
}

/** Who is asking, once the request's own authentication and the grant have been checked. */
interface Subject {
  nhi: NhiRecord;
  clientId: string;
  /** Expiry ceiling from the presented token (ms), when there is one. */
  notAfter?: number;
  /** Scope ceiling: a Mandate token being narrowed cannot widen. */
  scopeCeiling?: string[];
  audienceCeiling?: string;
  /** A DPoP-bound subject token: the exchange must prove the same key. */
  boundJkt?: string;
  /** A certificate-bound subject token (RFC 8705): the exchange must present the same certificate. */
  boundX5t?: string;
  act?: Record<string, unknown>;
  runId: string | null;
  via: string;
}

interface TokenRequest {
  params: Map<string, string>;
  resource: string[];
  audience: string[];
}

const MAX_TOKEN_PARAM = 16 * 1024;
/** One revocation or kill switch of a batch (`Broker.stage`): what `revokeToken`, `revokeAll('nhi')` and `kill('nhi')` do one at a time. */
export type EnforcementOp =
  | { op: 'revoke_token'; jti: string; reason: string; actor: string; signalId: string | null }
  | { op: 'revoke_all'; kind: 'nhi'; target: string; reason: string; actor: string; signalId: string | null }
  | { op: 'kill'; scope: 'nhi'; target: string; reason: string; actor: string };

/** The writes `Broker.stage` makes: the caller's transaction-bound store. */
export type EnforcementStore = Pick<BrokerStore & BrokerBatchStore, 'addRevocations' | 'addKillSwitch' | 'getIssuedToken'>;

export const APPROVAL_TTL_MS = 15 * 60 * 1000;

/**
 * The token broker: an OAuth 2.0 authorization server for machines. The token endpoint is a
 * sequence of named steps (as node-oidc-provider's): parse → DPoP / mTLS → client
 * authentication → grant → target → scope → profile (TTL, binding, approval) → kill switch
 * and revocation → mint → record. Every refusal is an OAuth error with its RFC code and is
 * recorded as `token.denied`.
 */
export class Broker {
  readonly catalog: ToolCatalog;
  readonly revocations: RevocationState;
  readonly accessTokens: AccessTokenVerifier;
  readonly dpop: DpopVerifier;
  readonly fetcher: JwksFetcher;
  private readonly federation: FederationVerifier;
  private readonly clientAssertions: ClientAssertionVerifier;
  /** One-time jtis (DPoP proofs, client assertions), group-committed to the store. */
  private readonly replay: ReplayBatcher;
  /** Issued-token records, written in batches off the request path. */
  private readonly issued: IssuedTokenWriter;
  /** NHIs, credentials and grants in memory, invalidated by `inventory.*` events. */
  private readonly inventory: InventoryView;
  /** The signing key as a node:crypto KeyObject, per CryptoKey (a rotation brings a new one). */
  private readonly signers = new WeakMap<object, KeyObject>();

  constructor(private readonly d: BrokerDeps) {
    this.catalog = new ToolCatalog(d.config, d.issuer);
    this.revocations = new RevocationState({ store: d.store, bus: d.bus, clock: d.clock, logger: d.logger, onSignalApplied: d.onSignalApplied });
    // The one verified-token memory of this instance (the proxy's too): proxy.token_cache_size.
    this.accessTokens = new AccessTokenVerifier({
      issuer: d.issuer, jwks: () => d.keys.jwks() as never, clock: d.clock,
      skewS: d.config.proxy.clock_skew, cacheSize: d.config.proxy.token_cache_size,
      retiredKey: (kid) => this.revocations.keyRetired(kid),
    });
    // A key retired at once (here, or at another instance: the bus, a reload): neither verified
    // nor signed with from now on.
    this.revocations.onKeyRetired((kid) => {
      void this.accessTokens.retireKey(kid);
      d.keys.keyRetired(kid);
    });
    this.replay = new ReplayBatcher({ store: d.store, clock: d.clock });
    this.issued = new IssuedTokenWriter({ store: d.store, logger: d.logger });
    this.inventory = new InventoryView({ store: d.store, bus: d.bus, clock: d.clock, logger: d.logger });
    this.dpop = new DpopVerifier({
      replay: this.replay, clock: d.clock, maxAgeS: d.config.tokens.dpop_proof_max_age,
      nonces: new DpopNonces(d.nonceSecret, d.clock),
      // RFC 9449 §8: tokens.dpop_nonce: required makes every proof carry a server nonce.
      requireNonce: d.config.tokens.dpop_nonce === 'required',
    });
    this.fetcher = new JwksFetcher({ outbound: d.outbound ?? new OutboundGuard(), clock: d.clock, logger: d.logger });
    this.federation = new FederationVerifier({
      trust: d.config.trust, fetcher: this.fetcher, clock: d.clock,
      findNhis: nhiMatcher(() => d.store.listCredentials(), d.clock),
    });
    this.clientAssertions = new ClientAssertionVerifier({
      replay: this.replay, clock: d.clock,
      // RFC 7523 §3 item 3: the assertion's aud names this server (issuer or token endpoint).
      audiences: [d.issuer(), `${d.issuer()}/oauth/token`],
      getClientKeys: async (clientId) => {
        const { credentials } = await this.inventory.get(clientId);
        const keys = credentials.filter((c) => c.type === 'private_key_jwt').flatMap((c) => ((c.data.jwks as { keys?: Record<string, unknown>[] } | undefined)?.keys ?? []));
        return keys.length ? (keys as never) : undefined;
      },
      getClientJwksUris: async (clientId) => {
        const { credentials } = await this.inventory.get(clientId);
        return credentials.flatMap((c) => (c.type === 'private_key_jwt' && typeof c.data.jwks_uri === 'string' ? [c.data.jwks_uri] : []));
      },
      fetcher: this.fetcher,
    });
  }

  async start(): Promise<void> {
    await this.inventory.start();
    await this.revocations.start();
  }

  async stop(): Promise<void> {
    await this.revocations.stop();
    await this.inventory.stop();
    await this.replay.drain().catch(() => {});
    await this.issued.close();
  }

  /** Writes queued issued-token records now (they are otherwise written within 50 ms). */
  async flush(): Promise<void> {
    await this.issued.flush();
  }

  tokenEndpoint(): string {
    return `${this.d.issuer()}/oauth/token`;
  }

  /** RFC 8414 §2 metadata. */
  metadata(): Record<string, unknown> {
    const iss = this.d.issuer();
    const tls = this.d.config.server.tls;
    return {
      issuer: iss,
      token_endpoint: `${iss}/oauth/token`,
      jwks_uri: `${iss}/oauth/jwks`,
      introspection_endpoint: `${iss}/oauth/introspect`,
      revocation_endpoint: `${iss}/oauth/revoke`,
      grant_types_supported: [GRANT.clientCredentials, GRANT.tokenExchange, GRANT.jwtBearer],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256', 'EdDSA', 'RS256', 'PS256'],
      introspection_endpoint_auth_methods_supported: ['private_key_jwt'],
      revocation_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
      dpop_signing_alg_values_supported: ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'],
      scopes_supported: [...new Set(this.d.config.tools.flatMap((t) => t.actions.map((a) => a.name)))].sort(),
      ...(tls && tls.client_auth !== 'none' ? { tls_client_certificate_bound_access_tokens: true, mtls_endpoint_aliases: { token_endpoint: `${iss}/oauth/token`, revocation_endpoint: `${iss}/oauth/revoke`, introspection_endpoint: `${iss}/oauth/introspect` } } : {}),
      authorization_details_types_supported: [],
      service_documentation: 'https://github.com/mandate/mandate#readme',
    };
  }

  mount(router: Router, maxBodyBytes: number): void {
    router.get('/.well-known/oauth-authorization-server', (ctx) => sendJson(ctx.res, 200, this.metadata(), { 'cache-control': 'public, max-age=300' }));
    router.post('/oauth/token', (ctx) => this.handleToken(ctx, maxBodyBytes));
    router.post('/oauth/introspect', (ctx) => this.handleIntrospect(ctx, maxBodyBytes));
    router.post('/oauth/revoke', (ctx) => this.handleRevoke(ctx, maxBodyBytes));
  }

  // ------------------------------------------------------------------ token endpoint

  private async handleToken(ctx: RequestContext, maxBodyBytes: number): Promise<void> {
    let nhiForAudit: string | null = null;
    let grantType = '';
    try {
      const req = await parseTokenRequest(ctx.req, maxBodyBytes);
      grantType = req.params.get('grant_type') ?? '';
      // Binding first: a bad proof fails before anything else is looked at (RFC 9449 §5).
      const jkt = ctx.req.headers.dpop !== undefined
        ? (await this.dpop.verify(ctx.req.headers.dpop, { method: 'POST', url: this.tokenEndpoint() })).jkt
        : undefined;
      const x5t = peerCertThumbprint(ctx.req);
      const client = await this.authenticateClient(ctx.req, req.params);
      const subject = await this.grant(req, client);
      nhiForAudit = subject.nhi.id;
      if (subject.boundJkt && subject.boundJkt !== jkt) {
        throw oauth.invalidGrant('the subject token is DPoP-bound: prove possession of the same key (RFC 9449 §4.3)');
      }
      if (subject.boundX5t && subject.boundX5t !== x5t) {
        throw oauth.invalidGrant('the subject token is certificate-bound: present the same client certificate (RFC 8705 §3)');
      }
      const result = await this.issue(req, subject, { jkt, x5t }, ctx);
      sendJson(ctx.res, 200, result);
    } catch (err) {
      if (err instanceof OAuthError) {
        this.deny(ctx, err, nhiForAudit, grantType);
        if (err.error === 'use_dpop_nonce') ctx.res.setHeader('dpop-nonce', this.dpop.currentNonce());
        if (err.error === 'invalid_dpop_proof' || err.error === 'use_dpop_nonce') {
          ctx.res.setHeader('www-authenticate', `DPoP error="${err.error}", algs="${this.dpop.supportedAlgorithms.join(' ')}"`);
        }
        sendOAuthError(ctx, err);
        return;
      }
      throw err;
    }
  }

  private deny(ctx: RequestContext, err: OAuthError, nhi: string | null, grantType: string): void {
    const data = { error: err.error, reason: err.message, grant_type: grantType };
    this.d.audit.record({ type: 'token.denied', actor: nhi, subject: nhi, decision: 'deny', traceId: ctx.traceId, data });
    void this.d.bus.publish('token.denied', { ...data, nhi, at: this.d.clock.now() }).catch(() => {});
  }

  /**
   * Client authentication (RFC 6749 §2.3, RFC 7523 §2.2 / §3): private_key_jwt, or a client
   * secret only for an NHI whose static secret is a recorded, unexpired exception. None is
   * fine for token exchange and JWT bearer (the assertion authenticates), not for client_credentials.
   */
  private async authenticateClient(req: IncomingMessage, params: Map<string, string>): Promise<string | undefined> {
    const assertion = params.get('client_assertion');
    const basic = parseBasic(req.headers.authorization);
    const postSecret = params.get('client_secret');
    const methods = [assertion !== undefined, basic !== undefined, postSecret !== undefined].filter(Boolean).length;
    if (methods > 1) throw oauth.invalidRequest('use exactly one client authentication method (RFC 6749 §2.3)');
    if (assertion !== undefined) {
      const r = await this.clientAssertions.verify(assertion, { clientIdParam: params.get('client_id'), assertionType: params.get('client_assertion_type') });
      return r.clientId;
    }
    if (basic || postSecret !== undefined) {
      const clientId = basic?.id ?? params.get('client_id');
      const secret = basic?.secret ?? postSecret!;
      if (!clientId) throw oauth.invalidClient('client_id is required');
      const now = this.d.clock.now();
      const creds = (await this.inventory.get(clientId)).credentials.filter(
        (c) => c.type === 'static_secret' && c.exceptionExpiresAt !== null && c.exceptionExpiresAt > now && typeof c.data.secret_ref === 'string',
      );
      let ok = false;
      for (const c of creds) {
        let expected: string;
        try {
          expected = resolveSecret(c.data.secret_ref as string, this.d.env ?? process.env);
        } catch {
          continue;
        }
        if (secretEquals(expected, secret)) ok = true;
      }
      if (!ok) throw oauth.invalidClient('client authentication failed');
      return clientId;
    }
    // No client authentication: a public client (token exchange and JWT bearer authenticate
    // through their assertion; client_credentials refuses this in grant()).
    return undefined;
  }

  /** The grant: who the subject is and what ceilings it brings. */
  private async grant(req: TokenRequest, clientId: string | undefined): Promise<Subject> {
    const p = req.params;
    const type = p.get('grant_type');
    switch (type) {
      case GRANT.clientCredentials: {
        if (!clientId) throw oauth.invalidClient('client_credentials needs client authentication (private_key_jwt)');
        return { nhi: await this.activeNhi(clientId), clientId, runId: null, via: 'client_credentials' };
      }
      case GRANT.jwtBearer: {
        const assertion = required(p, 'assertion');
        const w = await this.workload(assertion);
        return this.fromWorkload(w, clientId, 'jwt_bearer');
      }
      case GRANT.tokenExchange:
        return this.exchange(p, clientId);
      case undefined:
        throw oauth.invalidRequest('grant_type is required');
      case 'refresh_token':
        throw oauth.unsupportedGrantType('no refresh tokens for machines: re-federate with your workload identity');
      default:
        throw oauth.unsupportedGrantType(`grant_type "${type.slice(0, 100)}" is not supported`);
    }
  }

  /** RFC 8693 §2.1: subject_token (+ optional actor_token for delegation). */
  private async exchange(p: Map<string, string>, clientId: string | undefined): Promise<Subject> {
    const subjectToken = required(p, 'subject_token');
    const subjectType = required(p, 'subject_token_type');
    const requested = p.get('requested_token_type');
    if (requested !== undefined && requested !== TOKEN_TYPE.accessToken && requested !== TOKEN_TYPE.jwt) {
      throw oauth.invalidRequest('requested_token_type must be urn:ietf:params:oauth:token-type:access_token');
    }
    const subject = await this.presented(subjectToken, subjectType, 'subject_token', clientId);
    const actorToken = p.get('actor_token');
    const actorType = p.get('actor_token_type');
    if ((actorToken === undefined) !== (actorType === undefined)) {
      throw oauth.invalidRequest('actor_token and actor_token_type go together (RFC 8693 §2.1)');
    }
    if (actorToken !== undefined) {
      const actor = await this.presented(actorToken, actorType!, 'actor_token', undefined);
      // RFC 8693 §4.4: the subject says who may act for it (`may_act`, from config).
      if (!subject.nhi.mayAct.includes(actor.nhi.id)) {
        throw oauth.invalidGrant(`${actor.nhi.id} may not act for ${subject.nhi.id} (may_act)`);
      }
      // RFC 8693 §4.1: the current actor first, earlier actors nested inside.
      subject.act = { sub: actor.nhi.id, ...(actor.act ? { act: actor.act } : {}) };
      subject.via = 'token_exchange_delegation';
    }
    return subject;
  }

  private async presented(token: string, type: string, name: string, clientId: string | undefined): Promise<Subject> {
    if (token.length > MAX_TOKEN_PARAM) throw oauth.invalidRequest(`${name} is too large`);
    if (type === TOKEN_TYPE.accessToken) {
      const claims = await this.accessTokens.verify(token).catch(() => {
        throw oauth.invalidGrant(`${name} is not a valid Mandate access token`);
      });
      const revoked = this.revocations.check({ jti: claims.jti, nhiId: claims.sub, toolId: toolIdOf(claims.aud, this.d.issuer()), issuedAt: claims.iat * 1000 });
      if (revoked) throw oauth.invalidGrant(`${name} was revoked (${revoked})`);
      return {
        nhi: await this.activeNhi(claims.sub), clientId: clientId ?? claims.client_id, notAfter: claims.exp * 1000,
        scopeCeiling: claims.scope.split(' '), audienceCeiling: claims.aud, boundJkt: claims.cnf?.jkt, boundX5t: claims.cnf?.['x5t#S256'],
        act: claims.act, runId: claims.mandate_run_id ?? null, via: 'token_exchange_narrowing',
      };
    }
    if (type === TOKEN_TYPE.jwt || type === TOKEN_TYPE.idToken) {
      const w = await this.workload(token);
      return this.fromWorkload(w, clientId, 'token_exchange');
    }
    throw oauth.invalidRequest(`${name}_type "${type.slice(0, 100)}" is not supported`);
  }

  private async workload(jwt: string): Promise<VerifiedWorkload> {
    try {
      return await this.federation.verify(jwt);
    } catch (err) {
      if (err instanceof ShadowAgentError) {
        const data = { trust: err.trust, issuer: err.issuer, workload_subject: err.subject };
        this.d.audit.record({ type: 'shadow_agent', actor: null, subject: null, decision: 'deny', data });
        void this.d.bus.publish('shadow_agent', { ...data, at: this.d.clock.now() }).catch(() => {});
      }
      throw err;
    }
  }

  private async fromWorkload(w: VerifiedWorkload, clientId: string | undefined, via: string): Promise<Subject> {
    const nhi = await this.activeNhi(w.nhiId);
    if (clientId !== undefined && clientId !== nhi.id) throw oauth.invalidGrant('the authenticated client is not the workload the token names');
    return { nhi, clientId: clientId ?? nhi.id, notAfter: w.expiresAt, runId: w.runId, via };
  }

  private async activeNhi(id: string): Promise<NhiRecord> {
    const { nhi } = await this.inventory.get(id);
    if (!nhi) throw oauth.invalidClient('unknown client');
    if (nhi.status !== 'active') throw oauth.accessDenied(`${id} is disabled`);
    return nhi;
  }

  /** Target → scope → profile → kill/revocation → approval → mint → record. */
  private async issue(req: TokenRequest, s: Subject, binding: { jkt?: string; x5t?: string }, ctx: RequestContext): Promise<Record<string, unknown>> {
    const p = req.params;
    const tool = this.catalog.resolveTarget(req.resource, req.audience);
    if (s.audienceCeiling && s.audienceCeiling !== this.catalog.resourceOf(tool.id)) {
      throw oauth.invalidTarget('a Mandate token can only be narrowed for the tool it was issued for');
    }
    const requested = parseScope(p.get('scope'));
    if (requested.length === 0) throw oauth.invalidScope('scope is required: name the actions this task needs');
    const grants = (await this.inventory.get(s.nhi.id)).grants.filter((g) => g.toolId === tool.id);
    const now = this.d.clock.now();
    const granted = new Set(grants.filter((g) => g.expiresAt === null || g.expiresAt > now).flatMap((g) => (g.actions.includes('*') ? tool.actions.map((a) => a.name) : g.actions)));
    let scope = requested.filter((a) => granted.has(a) && tool.actions.some((x) => x.name === a));
    if (s.scopeCeiling) scope = scope.filter((a) => s.scopeCeiling!.includes(a));
    if (scope.length === 0) throw oauth.invalidScope(`${s.nhi.id} holds no grant for ${requested.join(' ').slice(0, 200)} on ${tool.id}`);
    // Continuous access evaluation (issue 5): a step-down keeps only the actions at or below the
    // fallback tier (the granted scope is narrowed, RFC 6749 §3.3 lets the server issue less than
    // asked and say so in `scope`); a step-up makes the actions above it need a human (elevation).
    const restriction = this.d.restrictions?.restrictionOf(s.nhi.id);
    let stepUp = false;
    if (restriction) {
      const allowed = new Set(this.catalog.actionsAtOrBelow(tool, restriction.fallbackTier));
      if (restriction.kind === 'step_down') {
        scope = scope.filter((a) => allowed.has(a));
        if (scope.length === 0) {
          throw oauth.invalidScope(`${s.nhi.id} was stepped down by ${describeSignal(restriction)}: only actions at or below the ${restriction.fallbackTier} tier until an operator restores it`);
        }
      } else stepUp = scope.some((a) => !allowed.has(a));
    }
    const profile = this.catalog.profileFor(tool, scope);

    const killed = this.revocations.killed(s.nhi.id, tool.id);
    if (killed) throw oauth.accessDenied(`issuance refused: kill switch (${killed})`);

    if (profile.binding === 'required' && !binding.jkt && !binding.x5t) {
      throw oauth.invalidRequest(`the ${profile.name} profile requires a sender-constrained token: send a DPoP proof (RFC 9449) or use mTLS (RFC 8705)`);
    }

    let approval: ApprovalRecord | undefined;
    const argsDigest = p.get('args_digest');
    if (argsDigest !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(argsDigest)) throw oauth.invalidRequest('args_digest must be base64url SHA-256 (43 characters)');
    if (profile.approval || stepUp) {
      const why = !profile.approval && restriction ? ` (stepped up by ${describeSignal(restriction)})` : '';
      approval = await this.elevation(p.get('approval_id'), s, tool, scope, argsDigest ?? null, ctx, why);
    }

    const ttlMs = profile.ttl * 1000;
    const exp = Math.floor(Math.min(now + ttlMs, s.notAfter ?? Infinity) / 1000);
    const iat = Math.floor(now / 1000);
    if (exp <= iat) throw oauth.invalidGrant('the presented token expires too soon to issue from');
    const jti = newJti();
    const claims: AccessTokenClaims = {
      iss: this.d.issuer(), sub: s.nhi.id, aud: this.catalog.resourceOf(tool.id), exp, iat, jti,
      client_id: s.clientId, scope: scope.join(' '), mandate_tier: profile.name,
      ...(binding.jkt ? { cnf: { jkt: binding.jkt } } : binding.x5t ? { cnf: { 'x5t#S256': binding.x5t } } : {}),
      ...(s.act ? { act: s.act } : {}),
      ...(s.runId ? { mandate_run_id: s.runId } : p.get('run_id') ? { mandate_run_id: p.get('run_id')!.slice(0, 200) } : {}),
      ...(approval ? { mandate_approval: approval.id, ...(approval.argsDigest ? { mandate_args_digest: approval.argsDigest } : {}) } : {}),
    };
    const token = await this.sign(claims);
    this.issued.record({
      jti, nhiId: s.nhi.id, audience: tool.id, scope, tier: profile.name, clientId: s.clientId, issuedAt: iat * 1000,
      expiresAt: exp * 1000, cnfJkt: binding.jkt ?? null, cnfX5t: binding.jkt ? null : binding.x5t ?? null, act: s.act ?? null, runId: claims.mandate_run_id ?? null,
    });
    const event = {
      jti, nhi: s.nhi.id, tool: tool.id, scope, requested_scope: requested, tier: profile.name, via: s.via, client_id: s.clientId,
      expires_at: exp * 1000, bound: binding.jkt ? 'dpop' : binding.x5t ? 'mtls' : 'none', act: s.act ?? null, approval: approval?.id ?? null,
    };
    this.d.audit.record({ type: 'token.issued', actor: s.nhi.id, subject: s.nhi.id, tool: tool.id, decision: 'allow', traceId: ctx.traceId, data: event });
    void this.d.bus.publish('token.issued', { ...event, at: now }).catch((err: unknown) => this.d.logger.warn({ err }, 'token.issued not published'));
    return {
      access_token: token,
      token_type: binding.jkt ? 'DPoP' : 'Bearer',
      expires_in: exp - iat,
      scope: claims.scope,
      ...(p.get('grant_type') === GRANT.tokenExchange ? { issued_token_type: TOKEN_TYPE.accessToken } : {}),
    };
  }

  /**
   * Signs an RFC 9068 access token (`typ: at+jwt`) with the current signing key, through a
   * node:crypto KeyObject made once per key, on libuv's thread pool (jws.ts: WebCrypto's path
   * costs more per call; the event loop stays free for the next request).
   */
  private sign(claims: AccessTokenClaims): Promise<string> {
    const { kid, alg, key } = this.d.keys.signingKey();
    let k = this.signers.get(key);
    if (!k) {
      k = KeyObject.from(key as Parameters<typeof KeyObject.from>[0]);
      this.signers.set(key, k);
    }
    return signCompactAsync({ typ: 'at+jwt', alg, kid }, claims as unknown as Record<string, unknown>, alg, k);
  }

  /**
   * Elevation (an action whose tier requires approval): without an approval id, create the
   * request and answer `approval_required` with its id; with one, pending answers
   * `authorization_pending`, denied `access_denied`, expired `expired_token` (RFC 8628 §3.5
   * vocabulary), approved is redeemed once and yields one short-lived token.
   */
  private async elevation(
    approvalId: string | undefined, s: Subject, tool: ToolConfig, scope: string[], argsDigest: string | null, ctx: RequestContext, why = '',
  ): Promise<ApprovalRecord> {
    const now = this.d.clock.now();
    if (approvalId === undefined) {
      const a: ApprovalRecord = {
        id: newId('apr'), nhiId: s.nhi.id, toolId: tool.id, action: scope.join(' '), argsDigest, status: 'pending',
        requestedAt: now, expiresAt: now + APPROVAL_TTL_MS, decidedBy: null, decidedAt: null, reason: null, redeemedAt: null,
        details: { client_id: s.clientId, run_id: s.runId, act: s.act ?? null, via: s.via },
      };
      await this.d.store.createApproval(a);
      this.d.audit.record({ type: 'approval.requested', actor: s.nhi.id, subject: a.id, tool: tool.id, traceId: ctx.traceId, data: { action: a.action, args_digest: argsDigest } });
      void this.d.bus.publish('approval.requested', { id: a.id, nhi: s.nhi.id, tool: tool.id, action: a.action, at: now }).catch(() => {});
      throw new OAuthError('approval_required', `a human must approve ${a.action} on ${tool.id}${why}; retry with approval_id once approved`, 400, {
        approval_id: a.id, approval_uri: `${this.d.issuer()}/admin/v1/approvals/${a.id}`, expires_in: Math.floor(APPROVAL_TTL_MS / 1000),
      });
    }
    const a = await this.d.store.getApproval(approvalId);
    if (!a || a.nhiId !== s.nhi.id || a.toolId !== tool.id || a.action !== scope.join(' ') || (a.argsDigest ?? null) !== argsDigest) {
      throw oauth.invalidGrant('approval_id does not match this NHI, tool, action and arguments');
    }
    if (a.expiresAt <= now) throw new OAuthError('expired_token', 'the approval request expired; ask again');
    if (a.status === 'pending') throw new OAuthError('authorization_pending', 'the approval is still pending');
    if (a.status === 'denied') throw oauth.accessDenied('the approval was denied');
    if (a.status !== 'approved' || !(await this.d.store.redeemApproval(a.id, now))) {
      throw oauth.invalidGrant('the approval was already used');
    }
    this.d.audit.record({ type: 'approval.redeemed', actor: s.nhi.id, subject: a.id, tool: tool.id, traceId: ctx.traceId, data: { action: a.action } });
    return a;
  }

  // ------------------------------------------------------------------ introspection, revocation

  /** RFC 7662 §2: the caller authenticates (private_key_jwt of an NHI, or an admin credential upstream). */
  private async handleIntrospect(ctx: RequestContext, maxBodyBytes: number): Promise<void> {
    try {
      const { params } = await parseTokenRequest(ctx.req, maxBodyBytes);
      const caller = await this.authenticateClient(ctx.req, params);
      if (!caller) throw oauth.invalidClient('introspection requires client authentication (RFC 7662 §2.1)');
      const token = required(params, 'token');
      const inactive = () => sendJson(ctx.res, 200, { active: false });
      let claims: AccessTokenClaims;
      try {
        claims = await this.accessTokens.verify(token);
      } catch {
        return inactive();
      }
      const toolId = toolIdOf(claims.aud, this.d.issuer());
      if (this.revocations.check({ jti: claims.jti, nhiId: claims.sub, toolId, issuedAt: claims.iat * 1000 })) return inactive();
      const { nhi } = await this.inventory.get(claims.sub);
      if (!nhi || nhi.status !== 'active') return inactive();
      // RFC 7662 §4: only the token's own NHI or a tool NHI may learn about it.
      const { nhi: callerNhi } = await this.inventory.get(caller);
      if (caller !== claims.sub && callerNhi?.class !== 'tool') return inactive();
      sendJson(ctx.res, 200, {
        active: true, iss: claims.iss, sub: claims.sub, aud: claims.aud, scope: claims.scope, client_id: claims.client_id,
        exp: claims.exp, iat: claims.iat, jti: claims.jti, token_type: claims.cnf?.jkt ? 'DPoP' : 'Bearer',
        ...(claims.cnf ? { cnf: claims.cnf } : {}), ...(claims.act ? { act: claims.act } : {}), mandate_tier: claims.mandate_tier,
      });
    } catch (err) {
      if (err instanceof OAuthError) return sendOAuthError(ctx, err);
      throw err;
    }
  }

  /** RFC 7009 §2: the owner revokes its own token; the answer is 200 whatever the token (§2.2). */
  private async handleRevoke(ctx: RequestContext, maxBodyBytes: number): Promise<void> {
    try {
      const { params } = await parseTokenRequest(ctx.req, maxBodyBytes);
      const caller = await this.authenticateClient(ctx.req, params);
      if (!caller) throw oauth.invalidClient('revocation requires client authentication (RFC 7009 §2.1)');
      const token = required(params, 'token');
      const hint = params.get('token_type_hint');
      if (hint !== undefined && hint !== 'access_token') {
        throw new OAuthError('unsupported_token_type', 'only access tokens exist here (no refresh tokens for machines)');
      }
      const claims = await this.accessTokens.verify(token).catch(() => undefined);
      // §2.1: a token of another client is not revoked, and the answer does not say so.
      if (claims && claims.client_id === caller) await this.revokeToken(claims.jti, claims.exp * 1000, `revoked by ${caller}`, `nhi:${caller}`);
      sendJson(ctx.res, 200, {});
    } catch (err) {
      if (err instanceof OAuthError) return sendOAuthError(ctx, err);
      throw err;
    }
  }

  // ------------------------------------------------------------------ operator actions

  async revokeToken(jti: string, expiresAt: number | null, reason: string, actor: string, signalId: string | null = null): Promise<void> {
    const tok = expiresAt === null ? this.issued.pending(jti) ?? await this.d.store.getIssuedToken(jti) : undefined;
    const rec = { id: newId('rev'), kind: 'token' as const, target: jti, notBefore: null, reason, signalId, createdAt: this.d.clock.now(), expiresAt: expiresAt ?? tok?.expiresAt ?? null };
    await this.d.store.addRevocation(rec);
    this.revocations.applyRevocation(rec);
    this.d.audit.record({ type: 'token.revoked', actor, subject: tok?.nhiId ?? null, data: { jti, reason } });
    this.propagate('revocation.added', rec, 'revocation not published');
  }

  /** Every token of an NHI (or tool, or everything) issued up to now stops working. */
  async revokeAll(kind: 'nhi' | 'tool' | 'global' | 'key', target: string | null, reason: string, actor: string, signalId: string | null = null) {
    const now = this.d.clock.now();
    const rec = { id: newId('rev'), kind, target, notBefore: now, reason, signalId, createdAt: now, expiresAt: now + this.d.config.tokens.max_ttl * 1000 + 60_000 };
    await this.d.store.addRevocation(rec);
    this.revocations.applyRevocation(rec);
    this.d.audit.record({ type: 'tokens.revoked', actor, subject: kind === 'nhi' ? target : null, tool: kind === 'tool' ? target : null, data: { kind, reason, ...(kind === 'key' ? { kid: target } : {}) } });
    this.propagate('revocation.added', rec, 'revocation not published');
    return rec;
  }

  async kill(scope: 'nhi' | 'tool' | 'global', target: string | null, reason: string, actor: string) {
    const rec = { id: newId('kill'), scope, target, reason, createdBy: actor, createdAt: this.d.clock.now(), liftedAt: null, liftedBy: null };
    await this.d.store.addKillSwitch(rec);
    this.revocations.applyKill(rec);
    this.d.audit.record({ type: 'kill.engaged', actor, subject: scope === 'nhi' ? target : null, tool: scope === 'tool' ? target : null, data: { scope, reason, kill_id: rec.id } });
    this.propagate('kill.added', rec, 'kill not published');
    return rec;
  }

  /**
   * Many revocations and kill switches written through `store` (the caller's transaction: a
   * batch of signals, group-committed with the signal records), in one multi-row INSERT for
   * the revocations. Nothing is applied, audited or published until the caller has committed
   * and calls `commit()`: it applies every record to this instance's revocation state at once,
   * audits them and publishes them all (in flight together, none awaited in turn; the store is
   * the truth, and instances that miss a message reload it within `reloadInterval`).
   * `published` settles when every publish has been acknowledged or has failed (logged).
   */
  async stage(store: EnforcementStore, ops: readonly EnforcementOp[]): Promise<{ revocations: RevocationRecord[]; kills: KillSwitchRecord[]; commit: (keep?: ReadonlySet<string>) => Promise<void> }> {
    const now = this.d.clock.now();
    const allRevs: Array<{ rec: RevocationRecord; actor: string; nhiId: string | null; jti?: string }> = [];
    const allKills: Array<{ rec: KillSwitchRecord; actor: string }> = [];
    for (const o of ops) {
      if (o.op === 'revoke_token') {
        const tok = this.issued.pending(o.jti) ?? await store.getIssuedToken(o.jti);
        allRevs.push({ rec: { id: newId('rev'), kind: 'token', target: o.jti, notBefore: null, reason: o.reason, signalId: o.signalId, createdAt: now, expiresAt: tok?.expiresAt ?? null }, actor: o.actor, nhiId: tok?.nhiId ?? null, jti: o.jti });
      } else if (o.op === 'revoke_all') {
        allRevs.push({
          rec: { id: newId('rev'), kind: o.kind, target: o.target, notBefore: now, reason: o.reason, signalId: o.signalId, createdAt: now, expiresAt: now + this.d.config.tokens.max_ttl * 1000 + 60_000 },
          actor: o.actor, nhiId: o.target,
        });
      } else {
        allKills.push({ rec: { id: newId('kill'), scope: o.scope, target: o.target, reason: o.reason, createdBy: o.actor, createdAt: now, liftedAt: null, liftedBy: null }, actor: o.actor });
      }
    }
    await store.addRevocations(allRevs.map((r) => r.rec));
    for (const k of allKills) await store.addKillSwitch(k.rec);
    // `keep`: only what these signals caused was written (the caller's statement skipped the rest).
    const commit = async (keep?: ReadonlySet<string>): Promise<void> => {
      const kept = <T>(list: T[], sig: (x: T) => string | null | undefined): T[] => (keep ? list.filter((x) => { const id = sig(x); return id != null && keep.has(id); }) : list);
      const revs = kept(allRevs, (r) => r.rec.signalId);
      const kills = kept(allKills, (k) => KILL_SIGNAL_PREFIX.exec(k.rec.reason)?.[1]);
      for (const r of revs) this.revocations.applyRevocation(r.rec);
      for (const k of kills) this.revocations.applyKill(k.rec);
      // The bus first: the other instances' wait is what time to revoke measures.
      // One bus entry for the batch's revocations (and one for its kills): one write, one ack,
      // one delivery per subscriber, instead of one per record.
      const sends = [
        this.d.bus.publishMany('revocation.added', revs.map((r) => ({ data: r.rec, id: r.rec.id }))).catch((err: unknown) => this.d.logger.warn({ err }, 'revocations not published')),
        this.d.bus.publishMany('kill.added', kills.map((k) => ({ data: k.rec, id: k.rec.id }))).catch((err: unknown) => this.d.logger.warn({ err }, 'kills not published')),
      ];
      for (const r of revs) {
        const sig = r.rec.signalId ? { signal_id: r.rec.signalId } : {};
        if (r.rec.kind === 'token') this.d.audit.record({ type: 'token.revoked', actor: r.actor, subject: r.nhiId, data: { jti: r.jti, reason: r.rec.reason, ...sig } });
        else this.d.audit.record({ type: 'tokens.revoked', actor: r.actor, subject: r.rec.target, tool: null, data: { kind: r.rec.kind, reason: r.rec.reason, ...sig } });
      }
      for (const k of kills) {
        this.d.audit.record({ type: 'kill.engaged', actor: k.actor, subject: k.rec.target, tool: null, data: { scope: k.rec.scope, reason: k.rec.reason, kill_id: k.rec.id } });
      }
      await Promise.all(sends);
    };
    return { revocations: allRevs.map((r) => r.rec), kills: allKills.map((k) => k.rec), commit };
  }

  async lift(id: string, actor: string): Promise<boolean> {
    const now = this.d.clock.now();
    const ok = await this.d.store.liftKillSwitch(id, actor, now);
    if (!ok) return false;
    const rec = (await this.d.store.listKillSwitches()).find((k) => k.id === id);
    if (rec) {
      this.revocations.applyKill(rec);
      this.propagate('kill.lifted', rec, 'kill lift not published');
    }
    this.d.audit.record({ type: 'kill.lifted', actor, data: { kill_id: id } });
    return true;
  }

  /**
   * An operator's change on the bus, not awaited (issue 15, item 12): the change is answered
   * once it is durable (in the store, with its audit record), and a NATS outage must not hold
   * the answer. The bus retries the publish (same message id) for its publish timeout; an
   * instance that never hears it still applies it at its next reload from the store (every
   * 5 s), and one cut off from the bus past `bus.staleness_bound` refuses every call meanwhile.
   */
  private propagate(subject: string, rec: RevocationRecord | KillSwitchRecord, failed: string): void {
    void this.d.bus.publish(subject, rec, { id: `${rec.id}:${subject}` }).catch((err: unknown) => this.d.logger.warn({ err, id: rec.id }, failed));
  }
}

function sendOAuthError(ctx: RequestContext, err: OAuthError): void {
  sendJson(ctx.res, err.status, { error: err.error, error_description: err.message, ...err.extra }, err.status === 401 ? { 'www-authenticate': 'Basic realm="mandate", error="invalid_client"' } : {});
}

function required(p: Map<string, string>, name: string): string {
  const v = p.get(name);
  if (v === undefined || v === '') throw oauth.invalidRequest(`${name} is required`);
  return v;
}

export function toolIdOf(aud: string, issuer: string): string {
  const prefix = `${issuer}/tools/`;
  return aud.startsWith(prefix) ? aud.slice(prefix.length) : aud;
}

/**
 * Form body (RFC 6749 §3.2): a repeated parameter is an error (§3.1), except `resource` and
 * `audience`, which RFC 8707 and RFC 8693 allow to repeat (the broker then says invalid_target).
 */
async function parseTokenRequest(req: IncomingMessage, maxBodyBytes: number): Promise<TokenRequest> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw oauth.invalidRequest('Content-Type must be application/x-www-form-urlencoded');
  const body = (await readBody(req, maxBodyBytes)).toString('utf8');
  const params = new Map<string, string>();
  const resource: string[] = [];
  const audience: string[] = [];
  for (const [k, v] of new URLSearchParams(body)) {
    if (k === 'resource') resource.push(v);
    else if (k === 'audience') audience.push(v);
    else if (params.has(k)) throw oauth.invalidRequest(`parameter "${k.slice(0, 50)}" is repeated (RFC 6749 §3.1)`);
    else params.set(k, v);
  }
  return { params, resource, audience };
}

/** `Authorization: Basic` client credentials (RFC 6749 §2.3.1: form-urlencoded then base64). */
function parseBasic(header: string | undefined): { id: string; secret: string } | undefined {
  if (!header || !/^Basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) throw oauth.invalidClient('malformed Basic credentials');
  try {
    return { id: decodeURIComponent(decoded.slice(0, i).replace(/\+/g, ' ')), secret: decodeURIComponent(decoded.slice(i + 1).replace(/\+/g, ' ')) };
  } catch {
    throw oauth.invalidClient('malformed Basic credentials');
  }
}

/** RFC 8705 §3.1: x5t#S256 of the verified client certificate, when TLS client auth is on. */
export function peerCertThumbprint(req: IncomingMessage): string | undefined {
  const sock = req.socket as TLSSocket;
  if (typeof sock.getPeerCertificate !== 'function' || !sock.authorized) return undefined;
  const cert = sock.getPeerCertificate();
  return cert?.raw ? sha256b64u(cert.raw) : undefined;
}
