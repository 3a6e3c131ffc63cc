import { newTraceId, randomHex, type Clock, type RequestContext } from '../core/index.js';
import { Call } from './call.js';
import type { Checks } from './checks.js';
import { traceparentFor } from './headers.js';
import type { HttpCalls } from './http-call.js';
import type { McpCalls } from './mcp-call.js';
import { noSuchTool, type Refusals } from './refusals.js';
import { resourceOf, type ToolRuntime } from './tools.js';

export interface PipelineParts {
  issuer: () => string;
  clock: Clock;
  tools: ReadonlyMap<string, ToolRuntime>;
  byHost: ReadonlyMap<string, ToolRuntime>;
  checks: Checks;
  http: HttpCalls;
  mcp: McpCalls;
  refusals: Refusals;
}

/**
 * One request to a tool, in the order of its checks. Each step either learns something about the
 * Call or throws the refusal, which refusals.ts answers (status, WWW-Authenticate, JSON-RPC error)
 * and records. After the checks every call passes, an HTTP call (http-call.ts) is matched to its
 * declared action by method and normalized path, an MCP call (mcp-call.ts) decided message by
 * message; both then go: scope and step-down → Cedar → approval gate → `tool.call_started`
 * committed to the audit log → forwarded with the tool's credential (scrubbed from the answer,
 * revocation checked per chunk) → the outcome record.
 */
export class Pipeline {
  constructor(private readonly p: PipelineParts) {}

  async handle(ctx: RequestContext): Promise<void> {
    const call = this.route(ctx);
    if (call === undefined) {
      noSuchTool(ctx.res);
      return;
    }
    const { checks } = this.p;
    try {
      checks.busFresh(); // a proxy that cannot hear revocations refuses every call
      checks.toolNotKilled(call);
      checks.noMethodOverride(call);
      call.tokenChecked(await checks.token(call)); // signature, iss, aud, exp, typ → revocation → binding (DPoP / mTLS)
      await checks.nhiActive(call); // and its actors; the NHI's kill switch at this tool
      checks.rateLimit(call);
      if (call.rt.tool.kind === 'mcp') await this.p.mcp.run(call);
      else await this.p.http.run(call);
    } catch (err) {
      await this.p.refusals.refuse(call, err);
    }
  }

  /**
   * The tool by its host name, or by the tool segment of the raw path, compared exactly:
   * `/tools/tick%65ts` or `/tools//tickets` name no tool (the router would have decoded or
   * collapsed them).
   */
  private route(ctx: RequestContext): Call | undefined {
    const started = this.p.clock.now();
    const hostRt = this.p.byHost.get(String(ctx.req.headers.host ?? '').toLowerCase());
    const seg = hostRt ? undefined : /^\/tools\/([^/]*)/.exec(ctx.path);
    const rt = hostRt ?? (seg ? this.p.tools.get(seg[1]!) : undefined);
    if (!rt) return undefined;
    if (!rt.resource) rt.resource = resourceOf(this.p.issuer(), rt.tool.id);
    // Without a traceparent the call's trace is the one the server started for it (ctx.traceId, the
    // id in its log lines); with one the proxy cannot continue, a new one.
    const incoming = ctx.req.headers.traceparent as string | undefined;
    const trace = traceparentFor(incoming, () => randomHex(8), () => (incoming === undefined ? ctx.traceId : newTraceId(this.p.clock.now())));
    return new Call(ctx, rt, hostRt ? ctx.path : ctx.path.slice(seg![0].length), trace, started);
  }
}
