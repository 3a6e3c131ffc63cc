import { KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  OAuthError, challenge, newId, oauth, readBody, resolveSecret, secretEquals, sendJson,
  type AuditSink, type Bus, type Clock, type Logger, type MandateConfig, type ReplayStore, type RequestContext, type Router, type ToolConfig,
} from '../core/index.js';
import { credentialActiveAt, type InventoryStore, type NhiRecord } from '../inventory/index.js';
import type { KeyManager } from '../keys/index.js';
import {
  APPROVAL_TTL_MS, describeSignal, tokenFacts, type ApprovalRecord, type Approvals, type Enforcement, type RestrictionLookup, type RevocationState,
} from '../enforcement/index.js';
import {
  ClientAssertionVerifier, GRANT, MAX_EXCHANGE_DEPTH, TOKEN_TYPE, exchangeDepthOf, newJti, parentJtiOf, parseScope, peerCertThumbprint, signCompactAsync, toolIdOf,
  type AccessTokenClaims, type AccessTokenVerifier, type DpopVerifier, type JwksFetcher, type ReplayBatcher,
} from '../jose/index.js';
import type { BrokerBatchStore, BrokerStore } from './ports.js';
import { ToolCatalog } from './tool-catalog.js';
import { FederationVerifier, ShadowAgentError, nhiMatcher, type VerifiedWorkload } from './federation.js';
import { IssuedTokenWriter } from './issued-tokens.js';
import { InventoryView } from './inventory-view.js';

export interface BrokerDeps {
  config: Readonly<MandateConfig>;
  /** The issuer URL (RFC 8414 §2): the public URL, known once the server listens (construct the broker after). */
  issuer: () => string;
  keys: KeyManager;
  /** `BrokerBatchStore`'s methods, when present, batch the hot writes (group commit). */
  store: BrokerStore & InventoryStore & ReplayStore & Partial<BrokerBatchStore>;
  /** Revocations and kill switches (refused at issuance; RFC 7009 revocation writes one). */
  enforcement: Enforcement;
  /** Human approval of elevation (actions whose tier needs one). */
  approvals: Approvals;
  /** Access-token verification (subject and actor tokens of token exchange, RFC 7009 revocation). */
  accessTokens: AccessTokenVerifier;
  /** DPoP proofs at the token endpoint (RFC 9449 §5). */
  dpop: DpopVerifier;
  /** JWKS of federated issuers and private_key_jwt clients. */
  fetcher: JwksFetcher;
  /** One-time jtis of client assertions, group-committed to the store. */
  replay: ReplayBatcher;
  bus: Bus;
  audit: AuditSink;
  clock: Clock;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Step-down / step-up restrictions from signals; none when absent. */
  restrictions?: RestrictionLookup;
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
  /**
   * The key the caller must prove: the `cnf` of the presented token that stands for the caller
   * (the subject token, or with delegation the actor token). The new token is bound to it.
   */
  proof?: { jkt?: string; x5t?: string; of: 'subject_token' | 'actor_token' };
  act?: Record<string, unknown>;
  /** The jti of the Mandate token this one is exchanged from: the new jti names it (lineage, tokens.ts). */
  parentJti?: string;
  runId: string | null;
  via: string;
}

/** RFC 7591 §2 client authentication method names. */
type ClientAuthMethod = 'private_key_jwt' | 'client_secret_basic' | 'client_secret_post' | 'none';
type OAuthEndpoint = 'token' | 'introspection' | 'revocation';

/**
 * The client authentication methods each endpoint accepts: `authenticateClient` enforces this
 * table and the RFC 8414 metadata is written from it, so the two cannot disagree.
 * - token: `none` because token exchange and the JWT bearer grant authenticate through the
 *   token they present (RFC 8693 §2.1 and RFC 7523 §3.1 make client authentication optional);
 *   client_credentials still refuses a request without one (RFC 6749 §4.4.2).
 * - introspection: private_key_jwt only (an NHI's own key; a token is only described to its
 *   own NHI or to a tool, RFC 7662 §4).
 * - revocation: the client that was issued the token authenticates (RFC 7009 §2.1), with any
 *   method it may use at the token endpoint, but never `none`.
 * Client secrets are accepted only for an NHI whose static secret is a recorded, unexpired exception.
 */
const CLIENT_AUTH_METHODS: Readonly<Record<OAuthEndpoint, readonly ClientAuthMethod[]>> = {
  token: ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none'],
  introspection: ['private_key_jwt'],
  revocation: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
};
/** The `alg` values a client assertion (private_key_jwt) may use, at every endpoint. */
const CLIENT_ASSERTION_ALGS: readonly string[] = ['ES256', 'EdDSA', 'RS256', 'PS256'];
/** Mandate admin credentials (`mdt.<id>.<secret>`, admin/auth.ts): tokens this server issues but does not revoke at RFC 7009's endpoint. */
const ADMIN_CREDENTIAL_SHAPE = /^mdt\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/;

interface TokenRequest {
  params: Map<string, string>;
  resource: string[];
  audience: string[];
}

const MAX_TOKEN_PARAM = 16 * 1024;
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
    this.revocations = d.enforcement.revocations;
    this.accessTokens = d.accessTokens;
    this.dpop = d.dpop;
    this.fetcher = d.fetcher;
    this.replay = d.replay;
    this.issued = new IssuedTokenWriter({ store: d.store, logger: d.logger });
    this.inventory = new InventoryView({ store: d.store, bus: d.bus, clock: d.clock, logger: d.logger });
    // A revocation of a token issued moments ago finds its expiry before its record is written.
    d.enforcement.readPendingTokens((jti) => this.issued.pending(jti));
    this.federation = new FederationVerifier({
      trust: d.config.trust, fetcher: this.fetcher, clock: d.clock,
      findNhis: nhiMatcher(() => d.store.listCredentials(), d.clock),
    });
    this.clientAssertions = new ClientAssertionVerifier({
      replay: this.replay, clock: d.clock, algorithms: [...CLIENT_ASSERTION_ALGS],
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
  }

  async stop(): Promise<void> {
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
      // Exactly what authenticateClient accepts at each endpoint (CLIENT_AUTH_METHODS).
      token_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS.token],
      token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
      introspection_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS.introspection],
      introspection_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
      revocation_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS.revocation],
      revocation_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
      dpop_signing_alg_values_supported: [...this.dpop.supportedAlgorithms],
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
      const client = await this.authenticateClient(ctx.req, req.params, 'token');
      const subject = await this.grant(req, client);
      nhiForAudit = subject.nhi.id;
      const result = await this.issue(req, subject, provenBinding(subject, { jkt, x5t }), ctx);
      sendJson(ctx.res, 200, result);
    } catch (err) {
      if (err instanceof OAuthError) {
        this.deny(ctx, err, nhiForAudit, grantType);
        if (err.error === 'use_dpop_nonce') ctx.res.setHeader('dpop-nonce', this.dpop.currentNonce());
        if (err.error === 'invalid_dpop_proof' || err.error === 'use_dpop_nonce') {
          ctx.res.setHeader('www-authenticate', challenge('DPoP', { error: err.error, algs: this.dpop.supportedAlgorithms.join(' ') }));
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
   * secret only for an NHI whose static secret is a recorded, unexpired exception; only the
   * methods `endpoint` accepts (CLIENT_AUTH_METHODS, what the metadata lists). None is fine
   * for token exchange and JWT bearer (the assertion authenticates), not for client_credentials.
   */
  private async authenticateClient(req: IncomingMessage, params: Map<string, string>, endpoint: OAuthEndpoint): Promise<string | undefined> {
    const assertion = params.get('client_assertion');
    const basic = parseBasic(req.headers.authorization);
    const postSecret = params.get('client_secret');
    const methods = [assertion !== undefined, basic !== undefined, postSecret !== undefined].filter(Boolean).length;
    if (methods > 1) throw oauth.invalidRequest('use exactly one client authentication method (RFC 6749 §2.3)');
    const method: ClientAuthMethod = assertion !== undefined ? 'private_key_jwt' : basic ? 'client_secret_basic' : postSecret !== undefined ? 'client_secret_post' : 'none';
    const accepted = CLIENT_AUTH_METHODS[endpoint];
    if (!accepted.includes(method)) {
      // RFC 6749 §5.2 invalid_client: "no client authentication included, or unsupported authentication method".
      throw oauth.invalidClient(method === 'none'
        ? `the ${endpoint} endpoint requires client authentication (${accepted.join(', ')})`
        : `${method} is not accepted at the ${endpoint} endpoint (${accepted.join(', ')})`);
    }
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
        (c) => c.type === 'static_secret' && credentialActiveAt(c, now) && typeof c.data.secret_ref === 'string',
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
        const nhi = await this.activeNhi(clientId, { invalid: () => oauth.invalidClient('unknown client'), disabled: denied });
        return { nhi, clientId, runId: null, via: 'client_credentials' };
      }
      case GRANT.jwtBearer: {
        const assertion = required(p, 'assertion');
        // RFC 7523 §3.1: an assertion that is not valid is invalid_grant (the federation errors are).
        const w = await this.workload(assertion);
        return this.fromWorkload(w, clientId, 'jwt_bearer', { invalid: oauth.invalidGrant, disabled: denied });
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

  /**
   * RFC 8693 §2.1: subject_token, and optionally actor_token for delegation.
   *
   * Without an actor token the caller holds the subject token: a bound subject token needs
   * proof of its key (narrowing). With one, the caller is the actor (§1.1): a bound actor token
   * needs proof of the actor's key and the new token is bound to it, so a copied actor token
   * cannot put its actor into `act`; the subject token is the evidence of delegation (its key
   * is not the caller's to prove) and the subject's `may_act` says who may act for it (§4.4).
   * §2.2.2: an invalid or unacceptable subject or actor token is `invalid_request`.
   */
  private async exchange(p: Map<string, string>, clientId: string | undefined): Promise<Subject> {
    const subjectToken = required(p, 'subject_token');
    const subjectType = required(p, 'subject_token_type');
    const requested = p.get('requested_token_type');
    if (requested !== undefined && requested !== TOKEN_TYPE.accessToken && requested !== TOKEN_TYPE.jwt) {
      throw oauth.invalidRequest('requested_token_type must be urn:ietf:params:oauth:token-type:access_token');
    }
    const actorToken = p.get('actor_token');
    const actorType = p.get('actor_token_type');
    if ((actorToken === undefined) !== (actorType === undefined)) {
      throw oauth.invalidRequest('actor_token and actor_token_type go together (RFC 8693 §2.1)');
    }
    if (actorToken === undefined) return this.presented(subjectToken, subjectType, 'subject_token', clientId);

    const actor = await this.presented(actorToken, actorType!, 'actor_token', clientId);
    if (clientId !== undefined && clientId !== actor.nhi.id) throw unacceptable('actor_token', 'the authenticated client is not the actor');
    // The actor acts in its own name: a delegated token as actor would hide who is acting.
    if (actor.act) throw unacceptable('actor_token', 'it is itself a delegated token (it has act): present the actor\'s own token');
    const subject = await this.presented(subjectToken, subjectType, 'subject_token', undefined);
    if (!subject.nhi.mayAct.includes(actor.nhi.id)) {
      throw unacceptable('actor_token', `${actor.nhi.id} may not act for ${subject.nhi.id} (may_act, RFC 8693 §4.4)`);
    }
    return {
      ...subject,
      clientId: actor.clientId,
      // The delegated token lives no longer than either token it came from.
      notAfter: Math.min(subject.notAfter ?? Infinity, actor.notAfter ?? Infinity),
      proof: actor.proof,
      // RFC 8693 §4.1: the current actor, with the prior chain of delegation (the subject
      // token's act) nested inside it. `mandate_jti` names the Mandate token the actor presented,
      // so that revoking it stops what was delegated with it (RevocationState.check, actors).
      act: { sub: actor.nhi.id, ...(actor.parentJti !== undefined ? { mandate_jti: actor.parentJti } : {}), ...(subject.act ? { act: subject.act } : {}) },
      via: 'token_exchange_delegation',
    };
  }

  /** A subject or actor token (RFC 8693 §2.1). Every refusal is `invalid_request` (§2.2.2), naming which token. */
  private async presented(token: string, type: string, name: 'subject_token' | 'actor_token', clientId: string | undefined): Promise<Subject> {
    if (token.length > MAX_TOKEN_PARAM) throw unacceptable(name, 'it is too large');
    if (type === TOKEN_TYPE.accessToken) {
      const claims = await this.accessTokens.verify(token).catch((err: unknown) => {
        if (err instanceof OAuthError && err.status >= 500) throw err;
        throw unacceptable(name, 'it is not a valid Mandate access token');
      });
      const revoked = this.revocations.check(tokenFacts(claims, toolIdOf(claims.aud, this.d.issuer())));
      if (revoked) throw unacceptable(name, `it was revoked (${revoked})`);
      if (name === 'subject_token' && exchangeDepthOf(claims.jti) >= MAX_EXCHANGE_DEPTH) {
        throw unacceptable(name, `it was already exchanged ${MAX_EXCHANGE_DEPTH} times from its first token: exchange from an earlier one`);
      }
      const cnf = claims.cnf;
      return {
        nhi: await this.activeNhi(claims.sub, unacceptableAs(name)), clientId: clientId ?? claims.client_id, notAfter: claims.exp * 1000,
        scopeCeiling: claims.scope.split(' '), audienceCeiling: claims.aud,
        ...(cnf?.jkt !== undefined || cnf?.['x5t#S256'] !== undefined ? { proof: { jkt: cnf.jkt, x5t: cnf['x5t#S256'], of: name } } : {}),
        act: claims.act, parentJti: claims.jti, runId: claims.mandate_run_id ?? null, via: 'token_exchange_narrowing',
      };
    }
    if (type === TOKEN_TYPE.jwt || type === TOKEN_TYPE.idToken) {
      const w = await this.workload(token).catch((err: unknown) => {
        if (err instanceof OAuthError && err.status < 500) throw unacceptable(name, err.message);
        throw err;
      });
      return this.fromWorkload(w, clientId, 'token_exchange', unacceptableAs(name));
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

  private async fromWorkload(w: VerifiedWorkload, clientId: string | undefined, via: string, refuse: Refusals): Promise<Subject> {
    const nhi = await this.activeNhi(w.nhiId, refuse);
    if (clientId !== undefined && clientId !== nhi.id) throw refuse.invalid('the authenticated client is not the workload the token names');
    return { nhi, clientId: clientId ?? nhi.id, notAfter: w.expiresAt, runId: w.runId, via };
  }

  /** The NHI a grant names, active; `refuse` builds the grant's errors (see Refusals). */
  private async activeNhi(id: string, refuse: Refusals): Promise<NhiRecord> {
    const { nhi } = await this.inventory.get(id);
    if (!nhi) throw refuse.invalid(`no NHI ${id.slice(0, 100)} is registered`);
    if (nhi.status !== 'active') throw refuse.disabled(`${id} is disabled`);
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
    // Continuous access evaluation: a step-down keeps only the actions at or below the
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
    if (killed) throw denied(`issuance refused: kill switch (${killed})`);

    if (profile.binding === 'required' && !binding.jkt && !binding.x5t) {
      throw oauth.invalidRequest(`the ${profile.name} profile requires a sender-constrained token: send a DPoP proof (RFC 9449) or use mTLS (RFC 8705)`);
    }

    let approval: ApprovalRecord | undefined;
    const argsDigest = p.get('args_digest');
    if (argsDigest !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(argsDigest)) throw oauth.invalidRequest('args_digest must be base64url SHA-256 (43 characters)');
    if (profile.approval || stepUp) {
      // A human approves one call: this NHI, this action, these arguments. An approval (and the
      // elevation token redeeming it) without an argument digest would pass any arguments.
      if (argsDigest === undefined) {
        throw oauth.invalidRequest(`${scope.join(' ')} on ${tool.id} needs a human's approval, which is bound to the call's arguments: send args_digest (base64url SHA-256 of the canonical JSON of the arguments, as the proxy computes it)`);
      }
      const why = !profile.approval && restriction ? ` (stepped up by ${describeSignal(restriction)})` : '';
      approval = await this.elevation(p.get('approval_id'), s, tool, scope, argsDigest, ctx, why);
    }

    const ttlMs = profile.ttl * 1000;
    const exp = Math.floor(Math.min(now + ttlMs, s.notAfter ?? Infinity) / 1000);
    const iat = Math.floor(now / 1000);
    if (exp <= iat) throw oauth.invalidGrant('the presented token expires too soon to issue from');
    const jti = newJti(s.parentJti);
    const claims: AccessTokenClaims = {
      iss: this.d.issuer(), sub: s.nhi.id, aud: this.catalog.resourceOf(tool.id), exp, iat, jti,
      client_id: s.clientId, scope: scope.join(' '), mandate_tier: profile.name,
      ...(binding.jkt ? { cnf: { jkt: binding.jkt } } : binding.x5t ? { cnf: { 'x5t#S256': binding.x5t } } : {}),
      ...(s.act ? { act: s.act } : {}),
      ...(s.runId ? { mandate_run_id: s.runId } : p.get('run_id') ? { mandate_run_id: p.get('run_id')!.slice(0, 200) } : {}),
      ...(approval ? { mandate_approval: approval.id, mandate_args_digest: argsDigest! } : {}),
    };
    const token = await this.sign(claims);
    this.issued.record({
      jti, nhiId: s.nhi.id, audience: tool.id, scope, tier: profile.name, clientId: s.clientId, issuedAt: iat * 1000,
      expiresAt: exp * 1000, cnfJkt: binding.jkt ?? null, cnfX5t: binding.jkt ? null : binding.x5t ?? null, act: s.act ?? null, runId: claims.mandate_run_id ?? null,
      parentJti: s.parentJti ?? null,
    });
    const event = {
      jti, nhi: s.nhi.id, tool: tool.id, scope, requested_scope: requested, tier: profile.name, via: s.via, client_id: s.clientId,
      expires_at: exp * 1000, bound: binding.jkt ? 'dpop' : binding.x5t ? 'mtls' : 'none', act: s.act ?? null, approval: approval?.id ?? null,
      parent_jti: s.parentJti ?? null,
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
    approvalId: string | undefined, s: Subject, tool: ToolConfig, scope: string[], argsDigest: string, ctx: RequestContext, why = '',
  ): Promise<ApprovalRecord> {
    const now = this.d.clock.now();
    if (approvalId === undefined) {
      const a = await this.d.approvals.request({
        nhiId: s.nhi.id, toolId: tool.id, action: scope.join(' '), argsDigest, traceId: ctx.traceId,
        details: { client_id: s.clientId, run_id: s.runId, act: s.act ?? null, via: s.via },
        auditData: { action: scope.join(' '), args_digest: argsDigest },
      });
      throw new OAuthError('approval_required', `a human must approve ${a.action} on ${tool.id}${why}; retry with approval_id once approved`, 400, {
        approval_id: a.id, approval_uri: this.d.approvals.uri(a.id), expires_in: Math.floor(APPROVAL_TTL_MS / 1000),
      });
    }
    const a = await this.d.approvals.get(approvalId);
    if (!a || a.nhiId !== s.nhi.id || a.toolId !== tool.id || a.action !== scope.join(' ') || (a.argsDigest ?? null) !== argsDigest) {
      throw oauth.invalidGrant('approval_id does not match this NHI, tool, action and arguments');
    }
    if (a.expiresAt <= now) throw new OAuthError('expired_token', 'the approval request expired; ask again');
    if (a.status === 'pending') throw new OAuthError('authorization_pending', 'the approval is still pending');
    if (a.status === 'denied') throw denied('the approval was denied');
    if (a.status !== 'approved' || !(await this.d.approvals.redeem(a, now, { traceId: ctx.traceId, auditData: { action: a.action } }))) {
      throw oauth.invalidGrant('the approval was already used');
    }
    return a;
  }

  // ------------------------------------------------------------------ introspection, revocation

  /** RFC 7662 §2: the caller authenticates (private_key_jwt of an NHI, or an admin credential upstream). */
  private async handleIntrospect(ctx: RequestContext, maxBodyBytes: number): Promise<void> {
    try {
      const { params } = await parseTokenRequest(ctx.req, maxBodyBytes);
      const caller = await this.authenticateClient(ctx.req, params, 'introspection');
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
      // The revocation set, as the proxy's: a token exchanged from a revoked one is inactive too.
      if (this.revocations.check(tokenFacts(claims, toolId))) return inactive();
      const { nhi } = await this.inventory.get(claims.sub);
      if (!nhi || nhi.status !== 'active') return inactive();
      // RFC 7662 §4: only the token's own NHI or a tool NHI may learn about it.
      const { nhi: callerNhi } = await this.inventory.get(caller);
      if (caller !== claims.sub && callerNhi?.class !== 'tool') return inactive();
      sendJson(ctx.res, 200, {
        active: true, iss: claims.iss, sub: claims.sub, aud: claims.aud, scope: claims.scope, client_id: claims.client_id,
        exp: claims.exp, iat: claims.iat, jti: claims.jti, token_type: claims.cnf?.jkt ? 'DPoP' : 'Bearer',
        ...(claims.cnf ? { cnf: claims.cnf } : {}), ...(claims.act ? { act: claims.act } : {}), mandate_tier: claims.mandate_tier,
        ...(parentJtiOf(claims.jti) !== undefined ? { mandate_parent_jti: parentJtiOf(claims.jti) } : {}),
      });
    } catch (err) {
      if (err instanceof OAuthError) return sendOAuthError(ctx, err);
      throw err;
    }
  }

  /**
   * RFC 7009 §2: the client revokes a token issued to it, and with it every token exchanged
   * from it (lineage). An invalid, unknown or expired token is answered 200 (§2.2).
   */
  private async handleRevoke(ctx: RequestContext, maxBodyBytes: number): Promise<void> {
    try {
      const { params } = await parseTokenRequest(ctx.req, maxBodyBytes);
      const caller = await this.authenticateClient(ctx.req, params, 'revocation');
      if (!caller) throw oauth.invalidClient('revocation requires client authentication (RFC 7009 §2.1)');
      const token = required(params, 'token');
      // §2.1: token_type_hint is a hint. A value this server does not know, or one naming a type
      // it does not issue (refresh_token: none for machines), extends the search to every type
      // it does: access tokens, the only kind RFC 7009 can revoke here. So it is not read.
      // §2.2.1: a Mandate admin credential is a token this server issues but does not revoke here.
      if (ADMIN_CREDENTIAL_SHAPE.test(token)) {
        throw new OAuthError('unsupported_token_type', 'admin credentials are managed through the admin API, not revoked with RFC 7009');
      }
      const claims = await this.accessTokens.verify(token).catch(() => undefined);
      if (claims) {
        // §2.1: "The authorization server first validates the client credentials … and then
        // verifies whether the token was issued to the client making the revocation request.
        // If this validation fails, the request is refused and the client is informed of the
        // error." The RFC 6749 §5.2 code for an authenticated client that may not do what it
        // asks is unauthorized_client (invalid_client would say its authentication failed,
        // invalid_grant that the token is bad; it is neither).
        if (claims.client_id !== caller) throw oauth.unauthorizedClient('the token was not issued to this client: only its client may revoke it (RFC 7009 §2.1)');
        await this.d.enforcement.revokeToken(claims.jti, claims.exp * 1000, `revoked by ${caller}`, `nhi:${caller}`);
      }
      sendJson(ctx.res, 200, {});
    } catch (err) {
      if (err instanceof OAuthError) return sendOAuthError(ctx, err);
      throw err;
    }
  }

}

/** How a grant refuses the NHI it names: unknown (or not the authenticated client), or disabled. */
interface Refusals {
  invalid: (why: string) => OAuthError;
  disabled: (why: string) => OAuthError;
}

/**
 * RFC 8693 §2.2.2: "If … either the subject_token or actor_token are invalid or unacceptable,
 * the authorization server MUST respond with an error code of invalid_request" (not
 * invalid_grant, which RFC 7523 keeps for a bad JWT bearer assertion).
 */
function unacceptable(name: 'subject_token' | 'actor_token', why: string): OAuthError {
  return oauth.invalidRequest(`the ${name} is not acceptable: ${why}`);
}

function unacceptableAs(name: 'subject_token' | 'actor_token'): Refusals {
  const refuse = (why: string) => unacceptable(name, why);
  return { invalid: refuse, disabled: refuse };
}

/**
 * `access_denied` at the token endpoint: an operator decided against this request (a human
 * denied the approval, a kill switch is engaged, the NHI is disabled). Not one of RFC 6749
 * §5.2's codes: none of those says it (invalid_grant and invalid_client would tell the client
 * its credentials are wrong, unauthorized_client that it is misconfigured for the grant type);
 * RFC 8628 §3.5 uses access_denied at the token endpoint for exactly this, a denied
 * authorization the client waited on, and the SDK (AccessDeniedError) reads it. Status 400, as
 * §5.2 answers every refusal but invalid_client.
 */
function denied(why: string): OAuthError {
  return new OAuthError('access_denied', why, 400);
}

/**
 * The key the new token is bound to. When the presented token that stands for the caller (the
 * subject token, or with delegation the actor token) is bound, the request must prove that key
 * (RFC 9449 §4.3 with the DPoP proof, RFC 8705 §3 with the TLS client certificate) and the new
 * token is bound to the same key; otherwise to whatever key the request proves, DPoP first.
 */
function provenBinding(s: Subject, request: { jkt?: string; x5t?: string }): { jkt?: string; x5t?: string } {
  const p = s.proof;
  if (!p) return request;
  const caller = p.of === 'actor_token' ? ' (with an actor_token, the caller is the actor)' : '';
  if (p.jkt !== undefined) {
    if (request.jkt !== p.jkt) throw unacceptable(p.of, `it is DPoP-bound: the request's DPoP proof must be made with its key${caller} (RFC 9449 §4.3)`);
    return { jkt: p.jkt };
  }
  if (request.x5t === undefined || request.x5t !== p.x5t) {
    throw unacceptable(p.of, `it is certificate-bound: present the same client certificate${caller} (RFC 8705 §3)`);
  }
  return { x5t: p.x5t };
}

function sendOAuthError(ctx: RequestContext, err: OAuthError): void {
  sendJson(ctx.res, err.status, { error: err.error, error_description: err.message, ...err.extra }, err.status === 401 ? { 'www-authenticate': challenge('Basic', { realm: 'mandate', error: 'invalid_client' }) } : {});
}

function required(p: Map<string, string>, name: string): string {
  const v = p.get(name);
  if (v === undefined || v === '') throw oauth.invalidRequest(`${name} is required`);
  return v;
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

