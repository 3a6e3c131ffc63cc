import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import {
  OAuthError, ReplicatedMap, UnavailableError, argsDigest, challenge, challenges, bodyDigest, newTraceId, randomHex, readBody, resolveSecret, sendJson,
  type ActionConfig, type DurableAuditSink, type Bus, type Clock, type Logger, type MandateConfig, type ReplayStore,
  type RequestContext, type Router, type Subscription, type ToolConfig,
} from '../core/index.js';
import { jwkThumbprint, type AccessTokenVerifier, type DpopVerifier } from '../jose/index.js';
import {
  ApprovalGate, ApprovalRequiredError, actorsOf, describeSignal,
  type Approvals, type RestrictionLookup, type RevocationState, type RevokedReason, type TokenFacts,
} from '../enforcement/index.js';
import type { InventoryStore, NhiRecord } from '../inventory/index.js';
import { MCP_METHODS, type PolicyDecision, type PolicyEngine, type PolicyRequest } from '../policy/index.js';
import { ActionMatcher, ambiguousQuery, bodyMayOverrideMethod, bodyMethodOverride, hasMethodOverride, hasMethodOverrideParam, mediaTypeOf, unreadableBody } from './actions.js';
import { normalizePath } from './path.js';
import { JSONRPC_ERRORS, JsonRpcParseError, UpstreamResponseError, filterToolsListResponse, parseJsonRpcBody, rpcError, toolsCall, type ParsedRpc, type RpcMessage } from './jsonrpc.js';
import { TokenBucketLimiter } from './rate-limit.js';
import { applyQueryCredential, responseHeaders, traceparentFor, upstreamHeaders, type InjectedCredential } from './headers.js';
import { ResourceAuthError, TokenChecker, credentialsOf, type CheckedToken } from './token-check.js';
import { Upstreams, UpstreamError } from './upstream.js';
import { SecretScrubber } from './scrub.js';

export interface ProxyDeps {
  config: Readonly<MandateConfig>;
  /** The issuer: `iss` of the tokens, and the base of each tool's resource URL (`{issuer}/tools/{id}`). */
  issuer: () => string;
  accessTokens: AccessTokenVerifier;
  dpop: DpopVerifier;
  revocations: RevocationState;
  policy: PolicyEngine;
  store: InventoryStore & ReplayStore;
  /** Human approval of held calls (the action's tier or a policy asks for it). */
  approvals: Approvals;
  /** The audit log: each forwarded call's record is appended durably before it is forwarded. */
  audit: DurableAuditSink;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Seconds without bus contact after which every call is refused (fail closed). */
  stalenessBoundS: number;
  /** Step-down / step-up restrictions from signals; none when absent. */
  restrictions?: RestrictionLookup;
  /**
   * The NHI's current risk score (0–100) for `context.risk_score`: an in-memory lookup (governance's
   * RiskView, wired by app.ts), never a store query. Absent: 0 (no governance).
   */
  risk?: RiskLookup;
  /** A call refused as revoked, with why (for the time-to-revoke timeline). */
  onRevoked?: (reason: RevokedReason, t: TokenFacts) => void;
}

/** Where the proxy reads an NHI's risk score; must be cheap (it is asked on every call that reaches Cedar). */
export interface RiskLookup {
  scoreOf(nhiId: string): number;
}

/** JSON-RPC error codes for refusals inside MCP (the implementation-defined server range, JSON-RPC 2.0 §5.1). */
export const MCP_ERROR = {
  accessDenied: -32001,
  approvalRequired: -32002,
  batchRefused: -32003,
} as const;

interface ToolRuntime {
  tool: ToolConfig;
  resource: string;
  matcher: ActionMatcher;
  credential: InjectedCredential | undefined;
  /** Fills the credential's forms in response bodies; undefined without a credential or with `scrub_response_secrets: false`. */
  scrubber: SecretScrubber | undefined;
  limiter: TokenBucketLimiter | undefined;
  approvalTiers: ReadonlySet<string>;
  /** The tool's response headers as the agent gets them (responseHeaders with its credential). */
  responseHeaders: (upstream: Record<string, string | string[] | undefined>) => Record<string, string | string[]>;
  /** Per HTTP action: `path?rawQuery` → argsDigest of its `{ params, query }` (see httpArgsDigest). */
  argsDigests: Map<ActionConfig, Map<string, string>>;
}

/** What the audit log and the bus learn about one call (no token, no secret, no query string). */
interface CallFacts {
  tool: string;
  method: string;
  path: string | null;
  nhi: string | null;
  on_behalf_of: string | null;
  run_id: string | null;
  action: string | null;
  args_digest: string | null;
  jti: string | null;
  binding: string | null;
  approval: string | null;
  policies: string[];
  /** The caller's socket address (governance: one jti from two addresses is a stolen token). */
  client_ip: string | null;
  /** RFC 7638 thumbprint of the key in the DPoP proof presented (a thumbprint, not a secret). */
  proof_jkt: string | null;
  /** The key the token is bound to (`cnf.jkt`), to compare with proof_jkt. */
  cnf_jkt: string | null;
  /**
   * The calls whose `tool.call_started` was committed (this one, or an MCP body's messages), once
   * they are being forwarded: a failure after that is their outcome, not a refusal. Not audited.
   */
  forwarded: readonly CallFacts[] | null;
}

const NHI_TTL_MS = 5000;
const MCP_METHOD_SET: ReadonlySet<string> = new Set(MCP_METHODS);

/**
 * The tool proxy: the one door to every tool. Per request, in order: route → fail closed on a
 * stale bus → kill switch → request hygiene (method overrides) → token (signature, iss, aud =
 * this tool, exp, typ; cached by digest) → revocation set → binding (DPoP proof or mTLS
 * certificate) → NHI active → rate limit → action (declared method + path template, or MCP
 * `tools/call` name) → scope → Cedar policy → approval gate → the tool's real credential in
 * place of the agent's token → forward → audit (`tool.called` / `tool.call_denied`).
 */
export class ToolProxy {
  private readonly tools = new Map<string, ToolRuntime>();
  private readonly byHost = new Map<string, ToolRuntime>();
  private readonly tokens: TokenChecker;
  private readonly gate: ApprovalGate;
  private readonly upstreams: Upstreams;
  /** NHIs read on use (core/replicated-view.ts, cache mode): an `inventory.*` event removes one, and a read that began before it is not kept. */
  private readonly nhis = new ReplicatedMap<string, { nhi: NhiRecord | undefined; at: number }>({ version: () => 0, mode: 'cache' });
  private sub: Subscription | undefined;
  /** Token profile name → its rank (the profile order: least dangerous first), for restrictions. */
  private readonly tierRank = new Map<string, number>();
  /** Outcomes and refusals the full audit log could not take (see record). */
  private lostRecords = 0;
  private lostLoggedAt = 0;

  constructor(private readonly d: ProxyDeps) {
    d.config.tokens.profiles.forEach((p, i) => this.tierRank.set(p.name, i));
    const env = d.env ?? process.env;
    const approvalTiers = new Set(d.config.tokens.profiles.filter((p) => p.approval).map((p) => p.name));
    const scrubbers = new Map<string, SecretScrubber>();
    for (const tool of d.config.tools) {
      const c = tool.credential;
      // Resolved once at start: a missing secret fails start-up, not the first call.
      const credential: InjectedCredential | undefined = c
        ? { type: c.type, value: resolveSecret(c.value, env), ...(c.name ? { name: c.name } : {}), ...(c.username ? { username: c.username } : {}) }
        : undefined;
      const rt: ToolRuntime = {
        tool,
        resource: '',
        matcher: new ActionMatcher(tool.actions),
        credential,
        scrubber: credential && tool.scrub_response_secrets ? new SecretScrubber(credential) : undefined,
        limiter: tool.rate_limit
          ? new TokenBucketLimiter({ perSecond: tool.rate_limit.per_second, burst: tool.rate_limit.burst, maxKeys: d.config.proxy.rate_limit_keys })
          : undefined,
        approvalTiers,
        responseHeaders: (upstream) => responseHeaders(upstream, credential ? { credential } : {}),
        argsDigests: new Map(),
      };
      this.tools.set(tool.id, rt);
      if (rt.scrubber) scrubbers.set(tool.id, rt.scrubber);
      for (const h of tool.hosts) this.byHost.set(h, rt);
    }
    this.tokens = new TokenChecker({ accessTokens: d.accessTokens, dpop: d.dpop, revocations: d.revocations, onRevoked: d.onRevoked });
    this.gate = new ApprovalGate({ approvals: d.approvals, replay: d.store, clock: d.clock, skewS: d.config.proxy.clock_skew });
    this.upstreams = new Upstreams(d.config.tools, { scrubbers });
  }

  async start(): Promise<void> {
    // NHI changes (disable, attributes) reach this instance at once; the TTL covers a missed message.
    this.sub = await this.d.bus.subscribe('inventory.>', (m) => {
      const nhi = (m.data as { nhi?: unknown }).nhi;
      if (typeof nhi === 'string') this.nhis.remove(nhi);
    }, { name: 'proxy-nhi-cache' });
  }

  async stop(): Promise<void> {
    await this.sub?.close();
    await this.upstreams.close();
  }

  /** The resource URL of a tool (RFC 8707 / RFC 9728 `resource`). */
  resourceOf(toolId: string): string {
    return `${this.d.issuer()}/tools/${toolId}`;
  }

  mount(router: Router): void {
    const handler = (ctx: RequestContext) => this.handle(ctx);
    for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      router.add(m, '/tools/:tool', handler);
      router.add(m, '/tools/:tool/*', handler);
    }
    router.get('/.well-known/oauth-protected-resource/tools/:tool', (ctx) => {
      const rt = this.tools.get(ctx.params.tool ?? '');
      if (!rt) return sendJson(ctx.res, 404, { error: 'not_found', error_description: 'no such tool' });
      sendJson(ctx.res, 200, this.resourceMetadata(rt), { 'cache-control': 'public, max-age=300' });
    });
    if (this.byHost.size > 0) router.setHostHandler((host) => (this.byHost.has(host) ? handler : undefined));
  }

  /** RFC 9728 §2 protected resource metadata for one tool. */
  resourceMetadata(rt: ToolRuntime): Record<string, unknown> {
    const iss = this.d.issuer();
    const tls = this.d.config.server.tls;
    const bindingRequired = rt.tool.actions.every((a) => this.d.config.tokens.profiles.find((p) => p.name === a.tier)?.binding === 'required');
    return {
      resource: this.resourceOf(rt.tool.id),
      authorization_servers: [iss],
      jwks_uri: `${iss}/oauth/jwks`,
      scopes_supported: rt.tool.actions.map((a) => a.name),
      bearer_methods_supported: ['header'],
      resource_signing_alg_values_supported: [],
      resource_name: rt.tool.description ?? rt.tool.id,
      dpop_signing_alg_values_supported: [...this.d.dpop.supportedAlgorithms],
      dpop_bound_access_tokens_required: bindingRequired && !(tls && tls.client_auth !== 'none'),
      ...(tls && tls.client_auth !== 'none' ? { tls_client_certificate_bound_access_tokens: true } : {}),
    };
  }

  // ------------------------------------------------------------------ the pipeline

  private async handle(ctx: RequestContext): Promise<void> {
    const started = this.d.clock.now();
    // The tool segment is taken from the raw path and compared exactly: `/tools/tick%65ts` or
    // `/tools//tickets` name no tool (the router would have decoded or collapsed them).
    const hostRt = this.byHost.get(String(ctx.req.headers.host ?? '').toLowerCase());
    const seg = hostRt ? undefined : /^\/tools\/([^/]*)/.exec(ctx.path);
    const rt = hostRt ?? (seg ? this.tools.get(seg[1]!) : undefined);
    if (!rt) {
      // Unknown tool: nothing to audit against, and nothing about other tools is revealed.
      sendJson(ctx.res, 404, { error: 'not_found', error_description: 'no such tool' });
      return;
    }
    if (!rt.resource) rt.resource = this.resourceOf(rt.tool.id);
    const method = ctx.req.method ?? 'GET';
    const rawRest = hostRt ? ctx.path : ctx.path.slice(seg![0].length);
    const rawQuery = queryOf(ctx.req.url ?? '');
    // Without a traceparent the call's trace is the one the server started for it (ctx.traceId, the
    // id in its log lines); with one the proxy cannot continue, a new one.
    const incoming = ctx.req.headers.traceparent as string | undefined;
    const trace = traceparentFor(incoming, () => randomHex(8), () => (incoming === undefined ? ctx.traceId : newTraceId(this.d.clock.now())));
    const facts: CallFacts = {
      tool: rt.tool.id, method, path: null, nhi: null, on_behalf_of: null, run_id: null, action: null, args_digest: null,
      jti: null, binding: null, approval: null, policies: [],
      client_ip: ctx.req.socket.remoteAddress ?? null, proof_jkt: null, cnf_jkt: null, forwarded: null,
    };
    let token: CheckedToken | undefined;
    try {
      this.failClosedIfStale();
      const killed = this.d.revocations.killed(undefined, rt.tool.id);
      if (killed) throw new ResourceAuthError('invalid_token', `access revoked: kill switch (${killed})`, 'Bearer');

      const override = hasMethodOverride(ctx.req.headers) ?? hasMethodOverrideParam(rawQuery);
      if (override) throw new OAuthError('invalid_request', `method override (${override}) is refused: send the real method`, 400);

      token = await this.tokens.check(ctx.req, rt.tool.id, rt.resource, `${this.d.issuer()}${ctx.path}`);
      const c = token.claims;
      facts.nhi = c.sub;
      facts.jti = c.jti;
      facts.binding = token.binding;
      facts.cnf_jkt = c.cnf?.jkt ?? null;
      if (token.binding === 'dpop') facts.proof_jkt = facts.cnf_jkt;
      facts.on_behalf_of = typeof c.act?.sub === 'string' ? c.act.sub : null;
      facts.run_id = c.mandate_run_id ?? null;

      const nhi = await this.nhi(c.sub);
      if (!nhi || nhi.status !== 'active') throw new ResourceAuthError('invalid_token', `the access token was revoked (${c.sub} is disabled)`, token.scheme);
      const nhiKilled = this.d.revocations.killed(c.sub, rt.tool.id);
      if (nhiKilled) throw new ResourceAuthError('invalid_token', `the access token was revoked (kill switch: ${nhiKilled})`, token.scheme);
      // A delegated token acts for its subject through its actors: each must still be active
      // (their kills and revocations are in the revocation check).
      if (c.act !== undefined) {
        for (const a of actorsOf(c.act)) {
          const actor = await this.nhi(a.sub);
          if (!actor || actor.status !== 'active') throw new ResourceAuthError('invalid_token', `the access token was revoked (its actor ${a.sub} is disabled)`, token.scheme);
        }
      }

      if (rt.limiter) {
        const r = rt.limiter.take(c.sub, this.d.clock.now());
        if (!r.ok) throw new OAuthError('rate_limited', `too many calls to ${rt.tool.id}; retry after ${r.retryAfterS}s`, 429, { retry_after: r.retryAfterS });
      }

      if (rt.tool.kind === 'mcp') {
        // An MCP server is one endpoint (MCP Transports, Streamable HTTP: "a single HTTP endpoint
        // path"): the tool's root and nothing else. Any other path or a query is refused here and
        // never forwarded, since the tool's credential would go with it to whatever it names.
        facts.path = rawRest === '' ? '/' : rawRest.slice(0, 256);
        if ((rawRest !== '' && rawRest !== '/') || (ctx.req.url ?? '').includes('?')) {
          throw new OAuthError('not_found', `${rt.tool.id} is an MCP tool: its one endpoint is /tools/${rt.tool.id}, without a path or query below it`, 404);
        }
        await this.mcp(ctx, rt, token, nhi, facts, trace, started);
        return;
      }
      // `/tools/x` and `/tools/x/` both mean the tool's root; the tool gets exactly what was asked.
      const path = rawRest === '' ? '' : normalizePath(rawRest);
      facts.path = path || '/';
      await this.http(ctx, rt, token, nhi, facts, path, rawQuery, trace, started);
    } catch (err) {
      if (!token && err instanceof ResourceAuthError) await this.refusedTokenFacts(ctx, facts);
      this.refuse(ctx, rt, token, facts, err, trace.traceId, started);
    }
  }

  /**
   * A token refused at binding or audience (a stolen token presented with another key's proof,
   * without one, or at another tool) is still named in the audit log: its verified `sub`, `jti`
   * and `cnf.jkt` (the signature cache makes this cheap), and the thumbprint of the proof's key.
   * Nothing is taken from a token whose signature does not verify.
   */
  private async refusedTokenFacts(ctx: RequestContext, facts: CallFacts): Promise<void> {
    try {
      const claims = await this.d.accessTokens.verify(credentialsOf(ctx.req).token);
      facts.nhi = claims.sub;
      facts.jti = claims.jti;
      facts.cnf_jkt = claims.cnf?.jkt ?? null;
    } catch {
      return;
    }
    const proof = ctx.req.headers.dpop;
    if (typeof proof !== 'string') return;
    try {
      const header = JSON.parse(Buffer.from(proof.split('.')[0] ?? '', 'base64url').toString('utf8')) as { jwk?: Record<string, unknown> };
      if (header.jwk && typeof header.jwk === 'object') facts.proof_jkt = await jwkThumbprint(header.jwk as Parameters<typeof jwkThumbprint>[0]);
    } catch {
      // An unreadable proof names no key.
    }
  }

  private async http(
    ctx: RequestContext, rt: ToolRuntime, token: CheckedToken, nhi: NhiRecord, facts: CallFacts,
    path: string, rawQuery: string, trace: { traceparent: string; traceId: string }, started: number,
  ): Promise<void> {
    const method = facts.method;
    const m = rt.matcher.matchHttp(method, path || '/');
    if (!m) throw new OAuthError('access_denied', `no declared action of ${rt.tool.id} matches ${method} ${facts.path}`, 403);
    facts.action = m.action.name;
    this.inScope(token, m.action);
    // What the policy decides on is what the tool gets: a query two servers would read two ways is refused.
    const ambiguous = ambiguousQuery(rawQuery);
    if (ambiguous) throw new OAuthError('invalid_request', `${ambiguous}: refused, since the policy and ${rt.tool.id} could read it differently`, 400);

    const declared = Number(ctx.req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > rt.tool.max_body_bytes) {
      throw new OAuthError('invalid_request', `request body is larger than ${rt.tool.max_body_bytes} bytes`, 413);
    }
    const args: Record<string, unknown> = { params: m.params, query: queryObject(rawQuery) };
    let body: Buffer | IncomingMessage | undefined = hasBody(ctx.req) ? ctx.req : undefined;
    if (body) {
      // Read whole (capped) before anything is sent, when:
      // - the call can be held (its tier, a step-up, or an `@approval` policy that can apply): it is
      //   bound to its body too, digested before the decision, so other bytes are another call;
      // - its length is not declared (chunked): a body over max_body_bytes must not reach the tool
      //   in part before the cap is found;
      // - it is of a type frameworks read `_method` from: a method override there is refused as in
      //   a header or the query.
      const held = this.holdsForTier(rt, m.action, token) || this.d.policy.mayHold(m.action.name);
      const type = mediaTypeOf(ctx.req.headers['content-type']);
      const scan = bodyMayOverrideMethod(type);
      if (scan) {
        const unreadable = unreadableBody(ctx.req.headers);
        if (unreadable) throw new OAuthError('invalid_request', `${unreadable}: refused, since the proxy checks such bodies for a method override`, 415);
      }
      if (held || scan || !Number.isFinite(declared)) {
        const whole = await readBody(ctx.req, rt.tool.max_body_bytes);
        const override = scan ? bodyMethodOverride(whole, type) : undefined;
        if (override) throw new OAuthError('invalid_request', `method override (${override}) is refused: send the real method`, 400);
        // The approval is for these bytes read this way: as this media type, with this coding.
        if (held) args.body = bodyDigest(whole, headerText(ctx.req.headers['content-type']), headerText(ctx.req.headers['content-encoding']));
        body = whole;
      }
    }
    facts.args_digest = args.body === undefined ? httpArgsDigest(rt, m.action, path, rawQuery, args) : argsDigest(args);
    const decision = await this.decide(rt, token, nhi, m.action, args, facts, { method, path: m.action.path ?? (path || '/') }, trace.traceId);
    if (decision.decision !== 'allow') throw new OAuthError('access_denied', `denied by policy ${decision.policies.join(', ') || '(default deny)'}`, 403);

    const pathAndQuery = this.upstreams.pathFor(rt.tool.id, path) + this.upstreamQuery(rt, rawQuery);
    const headers = this.forwardHeaders(ctx, rt, trace.traceparent);
    await this.forwarding(facts, [facts], trace.traceId);
    const up = await this.upstreams.forward({ tool: rt.tool, method, pathAndQuery, headers, body, revoked: this.revokedWhile(token) }, ctx.res, rt.tool.max_response_bytes, rt.responseHeaders);
    this.record('tool.called', 'allow', 'allowed', facts, trace.traceId, started, outcome(up));
  }

  private async mcp(
    ctx: RequestContext, rt: ToolRuntime, token: CheckedToken, nhi: NhiRecord, facts: CallFacts,
    trace: { traceparent: string; traceId: string }, started: number,
  ): Promise<void> {
    const method = facts.method;
    const headers = this.forwardHeaders(ctx, rt, trace.traceparent);
    const pathAndQuery = this.upstreams.pathFor(rt.tool.id, '') + this.upstreamQuery(rt, '');
    if (method === 'GET' || method === 'DELETE') {
      // Streamable HTTP: GET opens the server's event stream, DELETE ends a session (MCP
      // Transports §2.2.3, §2.5). Neither names a tool, but both reach the server with its
      // credential, so each is an action of its own: the token must hold a granted action of this
      // tool (after any step-down), and Cedar decides `mcp:stream` / `mcp:session/delete`. What
      // flows on the stream are the server's requests and notifications; the client's answers come
      // back as POSTs, checked there.
      facts.action = method === 'GET' ? 'mcp:stream' : 'mcp:session/delete';
      this.holdsGrantedAction(rt, token);
      const decision = await this.decide(rt, token, nhi, undefined, null, facts, undefined, trace.traceId, facts.action);
      if (decision.decision !== 'allow') throw new OAuthError('access_denied', `${facts.action} denied by policy ${decision.policies.join(', ') || '(default deny)'}`, 403);
      await this.forwarding(facts, [facts], trace.traceId);
      const up = await this.upstreams.forward({ tool: rt.tool, method, pathAndQuery, headers, body: undefined, revoked: this.revokedWhile(token) }, ctx.res, rt.tool.max_response_bytes, rt.responseHeaders);
      this.record('tool.called', 'allow', 'allowed', facts, trace.traceId, started, outcome(up));
      return;
    }
    if (method !== 'POST') throw new OAuthError('invalid_request', 'MCP over Streamable HTTP uses POST, GET or DELETE', 405);
    if (mediaTypeOf(ctx.req.headers['content-type']) !== 'application/json') throw new OAuthError('invalid_request', 'Content-Type must be application/json (MCP Streamable HTTP)', 415);
    const raw = await readBody(ctx.req, rt.tool.max_body_bytes);
    let parsed: ParsedRpc;
    try {
      // RFC 8259 §8.1: JSON between systems is UTF-8. Decoders replace bad bytes differently (one
      // U+FFFD or two, or refuse), so the arguments decided on here could differ from the server's.
      if (!isUtf8(raw)) throw new JsonRpcParseError(JSONRPC_ERRORS.PARSE_ERROR, 'body is not UTF-8 (RFC 8259 §8.1)');
      parsed = parseJsonRpcBody(raw.toString('utf8'), rt.tool.max_body_bytes);
    } catch (err) {
      const code = (err as { rpcCode?: number }).rpcCode ?? -32700;
      sendJson(ctx.res, 400, rpcError(null, code, (err as Error).message));
      this.record('tool.call_denied', 'deny', 'malformed JSON-RPC', facts, trace.traceId, started);
      return;
    }

    // Every message is decided before anything is sent: one refusal refuses the whole batch,
    // so an allowed call cannot carry a denied one past the proxy.
    const verdicts: Array<{ msg: RpcMessage; facts: CallFacts; error?: { code: number; message: string; data?: Record<string, unknown> } }> = [];
    let listsTools = false;
    for (const msg of parsed.messages) {
      const f: CallFacts = { ...facts, policies: [] };
      verdicts.push({ msg, facts: f });
      const v = verdicts[verdicts.length - 1]!;
      if (msg.kind === 'response') {
        f.action = 'mcp:response';
        continue;
      }
      try {
        const m = msg.method!;
        if (msg.kind === 'notification' && m.startsWith('notifications/')) {
          // The client's notifications (initialized, cancelled, progress, roots/list_changed) ask
          // the server for nothing. Any other method without an id is decided exactly as the
          // request would be: a server may act on it (a `tools/call` notification still runs).
          f.action = `mcp:${m.slice(0, 100)}`;
        } else if (m === 'tools/call') {
          const call = toolsCall(msg);
          const action = rt.matcher.byName(call.name);
          f.action = action?.name ?? call.name.slice(0, 128);
          if (!action) throw new OAuthError('access_denied', `${rt.tool.id} declares no tool named ${JSON.stringify(call.name.slice(0, 128))}`, 403);
          this.inScope(token, action);
          f.args_digest = argsDigest(call.arguments);
          const decision = await this.decide(rt, token, nhi, action, call.arguments, f, undefined, trace.traceId);
          if (decision.decision !== 'allow') throw new OAuthError('access_denied', `denied by policy ${decision.policies.join(', ') || '(default deny)'}`, 403);
        } else {
          f.action = `mcp:${m.slice(0, 100)}`;
          // A method the proxy does not know is refused: the list grows with the MCP spec, not by default.
          if (!MCP_METHOD_SET.has(f.action)) throw new OAuthError('access_denied', `the MCP method ${JSON.stringify(m.slice(0, 100))} is not allowed through the proxy`, 403);
          if (m === 'tools/list' && msg.kind === 'request') listsTools = true;
          const decision = await this.decide(rt, token, nhi, undefined, null, f, undefined, trace.traceId, f.action);
          if (decision.decision !== 'allow') throw new OAuthError('access_denied', `${m} denied by policy ${decision.policies.join(', ')}`, 403);
        }
      } catch (err) {
        if (err instanceof ApprovalRequiredError) {
          v.error = { code: MCP_ERROR.approvalRequired, message: err.message, data: { error: 'approval_required', ...err.extra } };
        } else if (err instanceof OAuthError && err.status === 403) {
          v.error = { code: MCP_ERROR.accessDenied, message: err.message, data: { error: err.error, ...err.extra } };
        } else if ((err as { rpcCode?: number }).rpcCode !== undefined) {
          v.error = { code: (err as { rpcCode: number }).rpcCode, message: (err as Error).message };
        } else throw err;
      }
    }

    const refused = verdicts.filter((v) => v.error);
    if (refused.length > 0) {
      const replies = verdicts
        .filter((v) => v.msg.kind === 'request')
        .map((v) => rpcError(v.msg.id ?? null, v.error?.code ?? MCP_ERROR.batchRefused, v.error?.message ?? 'refused: another message in this batch was denied', v.error?.data));
      for (const v of verdicts) {
        if (v.msg.kind === 'response') continue;
        this.record('tool.call_denied', 'deny', v.error?.message ?? 'batch refused', v.facts, trace.traceId, started);
      }
      // JSON-RPC errors travel in a 200 (MCP: the transport worked, the call did not). A refused
      // body of notifications and responses has no request to answer: the transport says "not
      // accepted" with an HTTP error and a JSON-RPC error without an id (MCP Transports §2.1.4).
      if (replies.length === 0) {
        const first = verdicts.find((v) => v.error)!.error!;
        sendJson(ctx.res, 403, rpcError(null, first.code, first.message, first.data));
        return;
      }
      sendJson(ctx.res, 200, parsed.batch ? replies : replies[0]);
      return;
    }

    await this.forwarding(facts, verdicts.map((v) => v.facts), trace.traceId);
    let status: number;
    let sent: number;
    let cut: string | undefined;
    if (listsTools) {
      // tools/list answers only with what this caller may call (scope, then policy): read whole.
      const up = await this.upstreams.send({ tool: rt.tool, method, pathAndQuery, headers, body: raw });
      status = up.status;
      if (up.status === 200) {
        const body = await this.upstreams.buffer(up, rt.tool.max_response_bytes);
        const allowed = (name: string) => this.mayCall(rt, token, nhi, name, trace.traceId);
        const filtered = Buffer.from(filterToolsListResponse(body, String(up.headers['content-type'] ?? ''), allowed), 'utf8');
        // Scrubbed as rewritten: re-serializing may have turned an escaped secret into a plain one.
        const out = rt.scrubber ? rt.scrubber.all(filtered) : filtered;
        const h = responseHeaders(up.headers, { credential: rt.credential, bodyRewritten: true });
        ctx.res.writeHead(up.status, { ...h, 'content-length': out.length });
        ctx.res.end(out);
        sent = out.length;
      } else {
        sent = await this.upstreams.pipe(up, ctx.res, rt.responseHeaders(up.headers), rt.tool.max_response_bytes);
      }
    } else {
      // Streamed to the caller as it comes (server-sent events too); a caller that hangs up
      // before the answer still leaves the call's outcome in the log.
      const up = await this.upstreams.forward({ tool: rt.tool, method, pathAndQuery, headers, body: raw, revoked: this.revokedWhile(token) }, ctx.res, rt.tool.max_response_bytes, rt.responseHeaders);
      status = up.status;
      sent = up.sent;
      cut = up.cut;
    }
    for (const v of verdicts) {
      this.record('tool.called', 'allow', 'allowed', v.facts, trace.traceId, started, outcome({ status, sent, cut }));
    }
  }

  /**
   * Why the call may no longer go on, asked before each chunk of its answer is passed on (an MCP
   * event stream lives as long as the session): the same in-memory check as at the start (token,
   * its ancestors and actors, NHI, tool, kill switches), so a revocation or a kill cuts it off.
   */
  private revokedWhile(token: CheckedToken): () => string | undefined {
    return () => this.d.revocations.check(token.facts);
  }

  // ------------------------------------------------------------------ decisions

  /**
   * RFC 6750 §3.1: the action must be one the token was issued for. A step-down
   * narrows that to the actions at or below the fallback tier, for tokens issued before it too.
   */
  private inScope(token: CheckedToken, action: ActionConfig): void {
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
  private holdsGrantedAction(rt: ToolRuntime, token: CheckedToken): void {
    for (const name of token.claims.scope.split(' ')) {
      const action = rt.matcher.byName(name);
      if (action && !this.steppedDownFrom(token, action)) return;
    }
    const r = this.d.restrictions?.restrictionOf(token.claims.sub);
    const why = r?.kind === 'step_down' ? ` (${token.claims.sub} was stepped down by ${describeSignal(r)})` : '';
    throw new OAuthError('insufficient_scope', `the access token holds no action of ${rt.tool.id} it may use${why}`, 403, { scope: rt.tool.actions.map((a) => a.name).join(' ') });
  }

  /** The step-down that takes `action` away from the token's NHI (above its fallback tier), if one does. */
  private steppedDownFrom(token: CheckedToken, action: ActionConfig): ReturnType<RestrictionLookup['restrictionOf']> {
    const r = this.d.restrictions?.restrictionOf(token.claims.sub);
    return r?.kind === 'step_down' && this.aboveTier(action, r.fallbackTier) ? r : undefined;
  }

  /** The tier holds the call for a human, or a step-up does for actions above its fallback tier. */
  private holdsForTier(rt: ToolRuntime, action: ActionConfig, token: CheckedToken): boolean {
    if (rt.approvalTiers.has(action.tier)) return true;
    const r = this.d.restrictions?.restrictionOf(token.claims.sub);
    return r?.kind === 'step_up' && this.aboveTier(action, r.fallbackTier);
  }

  private aboveTier(action: ActionConfig, tier: string): boolean {
    // An unknown tier ranks as the most dangerous: fail closed.
    return (this.tierRank.get(action.tier) ?? Infinity) > (this.tierRank.get(tier) ?? -1);
  }

  /**
   * Cedar, then the approval gate when the tier or a policy holds the call. Returns the final
   * decision (allow or deny); throws ApprovalRequiredError while a human has not approved.
   */
  private async decide(
    rt: ToolRuntime, token: CheckedToken, nhi: NhiRecord, action: ActionConfig | undefined, args: Record<string, unknown> | null,
    facts: CallFacts, endpoint: { method: string; path: string } | undefined, traceId: string, protocolAction?: string,
  ): Promise<PolicyDecision> {
    const req = this.policyRequest(rt, token, nhi, action, args, facts.args_digest, endpoint, protocolAction, false);
    let decision = this.d.policy.evaluate(req);
    facts.policies = decision.policies;
    const tierHold = action !== undefined && this.holdsForTier(rt, action, token);
    if (action && (tierHold || decision.decision === 'approval_required')) {
      if (decision.decision === 'deny') return decision;
      // Held because a signal stepped the NHI up (not its tier): the answer names the signal.
      const r = tierHold && !rt.approvalTiers.has(action.tier) ? this.d.restrictions?.restrictionOf(token.claims.sub) : undefined;
      const passed = await this.gate.pass({
        claims: token.claims, tool: rt.tool, action: action.name, argsDigest: facts.args_digest ?? argsDigest(null), traceId,
        because: tierHold ? 'tier' : 'policy',
        ...(r ? { signal: { id: r.signalId, note: `stepped up by ${describeSignal(r)}` } } : {}),
      });
      facts.approval = passed.approvalId;
      decision = this.d.policy.evaluate({ ...req, approved: true });
      facts.policies = decision.policies;
      if (decision.decision === 'approval_required') decision = { ...decision, decision: 'deny' };
    }
    return decision;
  }

  /** Whether tools/list shows a tool to this caller: declared, in scope, and not denied by policy. */
  private mayCall(rt: ToolRuntime, token: CheckedToken, nhi: NhiRecord, name: string, _traceId: string): boolean {
    const action = rt.matcher.byName(name);
    if (!action || !token.claims.scope.split(' ').includes(action.name)) return false;
    if (this.steppedDownFrom(token, action)) return false;
    const d = this.d.policy.evaluate(this.policyRequest(rt, token, nhi, action, null, null, undefined, undefined, false));
    // A call a human must approve is still listed: calling it asks for the approval.
    return d.decision !== 'deny';
  }

  private policyRequest(
    rt: ToolRuntime, token: CheckedToken, nhi: NhiRecord, action: ActionConfig | undefined, args: Record<string, unknown> | null,
    digest: string | null, endpoint: { method: string; path: string } | undefined, protocolAction: string | undefined, approved: boolean,
  ): PolicyRequest {
    return {
      nhi: { id: nhi.id, class: nhi.class, owner: nhi.owner, system: nhi.system, environment: nhi.environment, tier: nhi.tier },
      tool: { id: rt.tool.id, kind: rt.tool.kind },
      action: action?.name ?? protocolAction ?? 'mcp:unknown',
      tier: action?.tier ?? null,
      args,
      argsDigest: digest,
      ...(endpoint ? { endpoint } : {}),
      // The decision cache keys on the score (policy/engine.ts cacheKey), so a changed score is decided anew.
      riskScore: this.d.risk?.scoreOf(nhi.id) ?? 0,
      approved,
      onBehalfOf: typeof token.claims.act?.sub === 'string' ? token.claims.act.sub : null,
      runId: token.claims.mandate_run_id ?? null,
      now: this.d.clock.now(),
    };
  }

  // ------------------------------------------------------------------ helpers

  private failClosedIfStale(): void {
    const h = this.d.bus.health();
    if (!h.connected && this.d.clock.now() - h.lastContactAt > this.d.stalenessBoundS * 1000) {
      // Revocations may be arriving that this instance cannot hear: refuse rather than guess.
      throw new OAuthError('temporarily_unavailable', 'this proxy has lost contact with the bus for too long to know what is revoked', 503);
    }
  }

  private async nhi(id: string): Promise<NhiRecord | undefined> {
    const now = this.d.clock.now();
    const hit = this.nhis.get(id);
    if (hit && now - hit.at < NHI_TTL_MS) return hit.nhi;
    const ticket = this.nhis.begin();
    let nhi: NhiRecord | undefined;
    try {
      nhi = await this.d.store.getNhi(id);
    } catch (err) {
      this.nhis.abandon(ticket);
      throw err;
    }
    this.nhis.installOne(ticket, id, { nhi, at: now });
    return nhi;
  }

  /** The headers of the upstream hop: the agent's minus what never passes, plus the tool's credential. */
  private forwardHeaders(ctx: RequestContext, rt: ToolRuntime, traceparent: string): Record<string, string | string[]> {
    return upstreamHeaders(ctx.req.headers, {
      clientIp: ctx.req.socket.remoteAddress ?? '', proto: isTls(ctx.req) ? 'https' : 'http', host: String(ctx.req.headers.host ?? ''),
      traceparent, ...(rt.credential ? { credential: rt.credential } : {}),
    });
  }

  private upstreamQuery(rt: ToolRuntime, rawQuery: string): string {
    const q = rt.credential?.type === 'query' ? applyQueryCredential(rawQuery, rt.credential) : rawQuery;
    return q === '' ? '' : `?${q.replace(/^\?/, '')}`;
  }

  /** Writes the refusal in the tool's vocabulary and records it. */
  private refuse(ctx: RequestContext, rt: ToolRuntime, token: CheckedToken | undefined, facts: CallFacts, err: unknown, traceId: string, started: number): void {
    // The store (or the audit log) out of reach is a state, not a bug: 503, and the caller may
    // retry. Its detail (hosts, ports) goes to the debug log, not to the agent;
    // one line per refused call during an outage would flood the log (/readyz and
    // mandate_store_up say it once).
    if (err instanceof UnavailableError) ctx.log.debug({ err }, 'proxy refused a call: a dependency is unavailable');
    const oauthErr = err instanceof OAuthError
      ? err
      : err instanceof UnavailableError ? new OAuthError('temporarily_unavailable', 'the proxy cannot reach its store right now; retry later', 503) : undefined;
    if (!oauthErr) {
      // A tool answer the proxy cannot check (tools/list it cannot filter) is not passed on.
      const bad = err instanceof UpstreamResponseError;
      if (!bad) ctx.log.error({ err }, 'proxy failed');
      const description = bad ? `${rt.tool.id} sent a response the proxy cannot check` : 'internal error';
      this.recordFailure(facts, description, traceId, started);
      if (!ctx.res.headersSent) sendJson(ctx.res, bad ? 502 : 500, { error: bad ? 'bad_gateway' : 'server_error', error_description: description });
      else ctx.res.destroy();
      return;
    }
    this.recordFailure(facts, oauthErr.message, traceId, started, oauthErr.error);
    if (ctx.res.headersSent) {
      ctx.res.destroy();
      return;
    }
    if (err instanceof UpstreamError) {
      sendJson(ctx.res, err.status, { error: err.error, error_description: err.message });
      return;
    }
    const headers: Record<string, string> = {};
    const algs = this.d.dpop.supportedAlgorithms.join(' ');
    const meta = `${this.d.issuer()}/.well-known/oauth-protected-resource/tools/${rt.tool.id}`;
    const desc = oauthErr.message;
    if (err instanceof ResourceAuthError) {
      // RFC 6750 §3, RFC 9449 §7.1 and §8, RFC 9728 §5.1.
      if (err.error === 'use_dpop_nonce') headers['dpop-nonce'] = this.d.dpop.currentNonce();
      headers['www-authenticate'] = err.scheme === 'DPoP'
        ? challenge('DPoP', { error: err.error, error_description: desc, algs, resource_metadata: meta })
        : token === undefined && err.error === 'invalid_token' && !ctx.req.headers.authorization
          ? challenges(challenge('Bearer', { realm: 'mandate', resource_metadata: meta }), challenge('DPoP', { algs }))
          : challenge('Bearer', { error: err.error, error_description: desc, resource_metadata: meta });
    } else if (oauthErr.error === 'insufficient_scope') {
      const scheme = token?.scheme ?? 'Bearer';
      headers['www-authenticate'] = challenge(scheme, { error: 'insufficient_scope', error_description: desc, scope: String(oauthErr.extra.scope ?? ''), resource_metadata: meta });
    } else if (oauthErr.status === 429) {
      headers['retry-after'] = String(oauthErr.extra.retry_after ?? 1);
    } else if (oauthErr.status === 503) {
      // RFC 9110 §15.6.4: a condition that is expected to pass (the bus, the audit log).
      headers['retry-after'] = '1';
    }
    if (rt.tool.kind === 'mcp' && oauthErr.status === 403 && facts.method === 'POST') {
      // After authentication, a refused JSON-RPC message is a JSON-RPC error the client can show
      // (the event stream's GET and the session's DELETE carry no message: they get HTTP errors).
      const code = err instanceof ApprovalRequiredError ? MCP_ERROR.approvalRequired : MCP_ERROR.accessDenied;
      sendJson(ctx.res, 200, rpcError(null, code, oauthErr.message, { error: oauthErr.error, ...oauthErr.extra }), headers);
      return;
    }
    sendJson(ctx.res, oauthErr.status, { error: oauthErr.error, error_description: oauthErr.message, ...oauthErr.extra }, headers);
  }

  /**
   * The fact of the call, durable before anything of it reaches the tool (Vault's rule: no
   * audit, no request). Appended with the calls being forwarded at the same moment (one commit
   * for them all); when the log cannot take it, the call is refused with 503 and not forwarded.
   * A crash after this loses at most the call's outcome (`tool.called`), never that it was made.
   */
  private async forwarding(request: CallFacts, calls: readonly CallFacts[], traceId: string): Promise<void> {
    try {
      await this.d.audit.append(calls.map((f) => ({ type: 'tool.call_started', actor: f.nhi, subject: f.nhi, tool: f.tool, decision: 'allow', traceId, data: callData(f) })));
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      throw new OAuthError('temporarily_unavailable', 'the audit log cannot record this call now, so it was not forwarded; retry later', 503);
    }
    request.forwarded = calls;
  }

  /**
   * A refusal (`tool.call_denied`), or, once the call was forwarded (its `tool.call_started` is in
   * the log, the tool may have acted), the outcome of each call forwarded: `tool.called` with the
   * error (the tool unreachable or too slow, an answer the proxy would not pass on).
   */
  private recordFailure(facts: CallFacts, reason: string, traceId: string, started: number, error?: string): void {
    const extra = error === undefined ? {} : { error };
    if (facts.forwarded === null) {
      this.record('tool.call_denied', 'deny', reason, facts, traceId, started, extra);
      return;
    }
    for (const f of facts.forwarded) this.record('tool.called', 'allow', `failed: ${reason}`, f, traceId, started, { ...extra, upstream_status: 0 });
  }

  /**
   * A call's outcome (`tool.called`) or refusal (`tool.call_denied`): queued in the audit log and
   * published on the bus. A full log does not make it throw: the outcome of a call already
   * recorded as started, or a refusal (nothing reached the tool), is then lost, and said so in the
   * process log.
   */
  private record(
    type: 'tool.called' | 'tool.call_denied', decision: 'allow' | 'deny', reason: string, f: CallFacts, traceId: string, started: number,
    extra: Record<string, unknown> = {},
  ): void {
    const now = this.d.clock.now();
    const data = callData(f);
    data.reason = reason;
    data.latency_ms = now - started;
    for (const k in extra) data[k] = extra[k];
    // The audit log copies (scrubs and serializes) the data now; the same object then becomes the
    // bus event, with the fields the audit record keeps in its own columns (one object per call;
    // both buses serialize it when publish is called).
    try {
      this.d.audit.record({ type, actor: f.nhi, subject: f.nhi, tool: f.tool, decision, traceId, data });
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      this.lostRecords++;
      const t = this.d.clock.now();
      if (t - this.lostLoggedAt > 5_000) {
        this.lostLoggedAt = t;
        this.d.logger.error({ type, lost: this.lostRecords }, 'audit log full: call outcomes and refusals are not being recorded (forwarded calls are refused)');
      }
    }
    data.nhi = f.nhi;
    data.tool = f.tool;
    data.decision = decision;
    data.trace_id = traceId;
    data.at = now;
    void this.d.bus.publish(type, data).catch(() => {});
  }
}

/** The outcome fields of a forwarded call's `tool.called` record. */
function outcome(up: { status: number; sent: number; cut?: string | undefined }): Record<string, unknown> {
  return up.cut === undefined
    ? { upstream_status: up.status, response_bytes: up.sent }
    : { upstream_status: up.status, response_bytes: up.sent, cut_off: `access revoked (${up.cut})` };
}

/** What the audit log and the bus learn about a call (no token, no secret, no query string). */
function callData(f: CallFacts): Record<string, unknown> {
  return {
    method: f.method, path: f.path, action: f.action, args_digest: f.args_digest, jti: f.jti, on_behalf_of: f.on_behalf_of,
    run_id: f.run_id, binding: f.binding, approval: f.approval, policies: f.policies, client_ip: f.client_ip, proof_jkt: f.proof_jkt,
    cnf_jkt: f.cnf_jkt,
  };
}

const MAX_DIGESTS_PER_ACTION = 4096;
const MAX_DIGEST_KEY = 1024;

/**
 * argsDigest(args) of an HTTP call whose args are `{ params, query }` only (no body digest),
 * remembered per action by `path?rawQuery`: for one action the normalized path decides the
 * template's params and the raw query the query object, so the key decides the digest (a
 * normalized path has no raw `?`). Saves the canonical JSON and the SHA-256 on repeated calls
 * (a client reading the same items). Bounded per action; long keys are not remembered.
 */
function httpArgsDigest(rt: ToolRuntime, action: ActionConfig, path: string, rawQuery: string, args: Record<string, unknown>): string {
  const key = `${path}?${rawQuery}`;
  if (key.length > MAX_DIGEST_KEY) return argsDigest(args);
  let known = rt.argsDigests.get(action);
  if (known === undefined) rt.argsDigests.set(action, (known = new Map()));
  let digest = known.get(key);
  if (digest === undefined) {
    digest = argsDigest(args);
    if (known.size >= MAX_DIGESTS_PER_ACTION) known.clear();
    known.set(key, digest);
  }
  return digest;
}

function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
}

/**
 * The query of a call without one: shared by every such call (a null-prototype object is made
 * in V8's dictionary mode, a hash table per call otherwise), frozen, since args are only read
 * (digest, policy).
 */
const NO_QUERY: Record<string, string | string[]> = Object.freeze(Object.create(null) as Record<string, string | string[]>);

/** The query as an object for policies: a repeated parameter becomes a list. */
function queryObject(raw: string): Record<string, string | string[]> {
  if (raw === '') return NO_QUERY;
  // No prototype: a parameter named __proto__ is just a key.
  const out = Object.create(null) as Record<string, string | string[]>;
  for (const [k, v] of new URLSearchParams(raw)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/** A request header's value as sent (the first of repeated ones, as node:http keeps it), or null. */
function headerText(v: string | string[] | undefined): string | null {
  return v === undefined ? null : Array.isArray(v) ? (v[0] ?? null) : v;
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function isTls(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true;
}
