import {
  sendJson, type DurableAuditSink, type Bus, type Clock, type Logger, type MandateConfig, type ReplayStore, type RequestContext, type Router, type Subscription,
} from '../core/index.js';
import type { AccessTokenVerifier, DpopVerifier } from '../jose/index.js';
import type { Approvals, RestrictionLookup, RevocationState, RevokedReason, TokenFacts } from '../enforcement/index.js';
import type { InventoryStore } from '../inventory/index.js';
import type { PolicyEngine } from '../policy/index.js';
import { Checks } from './checks.js';
import { Decisions } from './decide.js';
import { Forwarder } from './forwarding.js';
import { HttpCalls } from './http-call.js';
import { McpCalls } from './mcp-call.js';
import { Pipeline } from './pipeline.js';
import { CallRecords } from './records.js';
import { Refusals, noSuchTool } from './refusals.js';
import type { SecretScrubber } from './scrub.js';
import { resourceOf, toolRuntimes, type ToolRuntime } from './tools.js';
import { Upstreams } from './upstream.js';

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

/**
 * The tool proxy: the one door to every tool, mounted at `/tools/{id}` (and at each tool's host
 * names), with each tool's RFC 9728 metadata. What a call goes through is in pipeline.ts.
 */
export class ToolProxy {
  private readonly tools = new Map<string, ToolRuntime>();
  private readonly byHost = new Map<string, ToolRuntime>();
  private readonly checks: Checks;
  private readonly upstreams: Upstreams;
  private readonly pipeline: Pipeline;
  private sub: Subscription | undefined;

  constructor(private readonly d: ProxyDeps) {
    const scrubbers = new Map<string, SecretScrubber>();
    for (const rt of toolRuntimes(d.config, d.env ?? process.env)) {
      this.tools.set(rt.tool.id, rt);
      if (rt.scrubber) scrubbers.set(rt.tool.id, rt.scrubber);
      for (const h of rt.tool.hosts) this.byHost.set(h, rt);
    }
    const checks = new Checks(d);
    const decisions = new Decisions(
      { policy: d.policy, approvals: d.approvals, replay: d.store, clock: d.clock, clockSkewS: d.config.proxy.clock_skew, restrictions: d.restrictions, risk: d.risk },
      checks,
    );
    const upstreams = new Upstreams(d.config.tools, { scrubbers });
    const forwarder = new Forwarder(upstreams, d.revocations);
    const records = new CallRecords(d);
    const refusals = new Refusals(d, records);
    this.checks = checks;
    this.upstreams = upstreams;
    this.pipeline = new Pipeline({
      issuer: d.issuer, clock: d.clock, tools: this.tools, byHost: this.byHost, checks, refusals,
      http: new HttpCalls(d.policy, checks, decisions, records, forwarder),
      mcp: new McpCalls(checks, decisions, records, refusals, forwarder),
    });
  }

  async start(): Promise<void> {
    // NHI changes (disable, attributes) reach this instance at once; the TTL covers a missed message.
    this.sub = await this.d.bus.subscribe('inventory.>', (m) => {
      const nhi = (m.data as { nhi?: unknown }).nhi;
      if (typeof nhi === 'string') this.checks.nhiChanged(nhi);
    }, { name: 'proxy-nhi-cache' });
  }

  async stop(): Promise<void> {
    await this.sub?.close();
    await this.upstreams.close();
  }

  /** The resource URL of a tool (RFC 8707 / RFC 9728 `resource`). */
  resourceOf(toolId: string): string {
    return resourceOf(this.d.issuer(), toolId);
  }

  mount(router: Router): void {
    const handler = (ctx: RequestContext) => this.pipeline.handle(ctx);
    for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      router.add(m, '/tools/:tool', handler);
      router.add(m, '/tools/:tool/*', handler);
    }
    router.get('/.well-known/oauth-protected-resource/tools/:tool', (ctx) => {
      const rt = this.tools.get(ctx.params.tool ?? '');
      if (!rt) return noSuchTool(ctx.res);
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
}
