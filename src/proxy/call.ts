import type { ActionConfig, RequestContext } from '../core/index.js';
import type { NhiRecord } from '../inventory/index.js';
import type { CheckedToken } from './token-check.js';
import type { ToolRuntime } from './tools.js';

/**
 * One call to a tool on its way through the pipeline (pipeline.ts): the request and its tool, and
 * what each step learns (token, NHI, action, arguments and their digest, the policies that decided,
 * the approval). It replaces a bag of facts and long argument lists: every step takes the Call.
 *
 * The audited part (records.ts, callData) names no token, no secret and no query string. Each
 * message of an MCP body is a Call of its own (forMessage), decided and recorded alone.
 *
 * One object per request, every field set in the constructor (one shape for V8): the hot path
 * allocates nothing else for it.
 */
export class Call {
  readonly method: string;
  /** The query as sent, without `?`. */
  readonly rawQuery: string;

  // ---- audited (callData)
  /** The path as audited: the normalized path of an HTTP call (`/` for the tool's root), or an MCP call's as sent (capped). */
  path: string | null = null;
  /** The calling NHI (`sub` of the token), once the token verified. */
  nhiId: string | null = null;
  onBehalfOf: string | null = null;
  runId: string | null = null;
  /** The action's name: a declared action, `mcp:<method>`, or an undeclared name as asked (capped). */
  action: string | null = null;
  argsDigest: string | null = null;
  jti: string | null = null;
  binding: string | null = null;
  approval: string | null = null;
  policies: string[] = [];
  /** The caller's socket address (governance: one jti from two addresses is a stolen token). */
  readonly clientIp: string | null;
  /** RFC 7638 thumbprint of the key in the DPoP proof presented (a thumbprint, not a secret). */
  proofJkt: string | null = null;
  /** The key the token is bound to (`cnf.jkt`), to compare with proofJkt. */
  cnfJkt: string | null = null;

  // ---- learnt on the way, not audited
  /** The path below the tool as forwarded to an HTTP tool ('' for its root). */
  toolPath = '';
  token: CheckedToken | undefined = undefined;
  nhi: NhiRecord | undefined = undefined;
  /** The tool's declared action this call is (undefined for MCP's own methods). */
  declared: ActionConfig | undefined = undefined;
  /** What the policy decides on: an HTTP call's `{ params, query[, body] }`, a `tools/call`'s arguments. */
  args: Record<string, unknown> | null = null;
  /**
   * The calls whose `tool.call_started` was committed (this one, or an MCP body's messages), once
   * they are being forwarded: a failure after that is their outcome, not a refusal.
   */
  forwarded: readonly Call[] | null = null;

  constructor(
    readonly ctx: RequestContext,
    readonly rt: ToolRuntime,
    /** The path below the tool's segment (or, routed by host name, the whole path), as sent. */
    readonly rawRest: string,
    readonly trace: { traceparent: string; traceId: string },
    /** When the proxy got the request (clock ms): the records' latency. */
    readonly started: number,
    /** The request this is one message of (forMessage): what was read of the request is its. */
    request?: Call,
  ) {
    if (request === undefined) {
      this.method = ctx.req.method ?? 'GET';
      this.rawQuery = queryOf(ctx.req.url ?? '');
      this.clientIp = ctx.req.socket.remoteAddress ?? null;
    } else {
      this.method = request.method;
      this.rawQuery = request.rawQuery;
      this.clientIp = request.clientIp;
    }
  }

  /** The token checked: what the records name of it. */
  tokenChecked(token: CheckedToken): void {
    const c = token.claims;
    this.token = token;
    this.nhiId = c.sub;
    this.jti = c.jti;
    this.binding = token.binding;
    this.cnfJkt = c.cnf?.jkt ?? null;
    if (token.binding === 'dpop') this.proofJkt = this.cnfJkt;
    this.onBehalfOf = typeof c.act?.sub === 'string' ? c.act.sub : null;
    this.runId = c.mandate_run_id ?? null;
  }

  /** One message of this MCP request: the request's facts so far, its own action, digest and policies. */
  forMessage(): Call {
    const m = new Call(this.ctx, this.rt, this.rawRest, this.trace, this.started, this);
    m.path = this.path;
    m.nhiId = this.nhiId;
    m.onBehalfOf = this.onBehalfOf;
    m.runId = this.runId;
    m.action = this.action;
    m.argsDigest = this.argsDigest;
    m.jti = this.jti;
    m.binding = this.binding;
    m.approval = this.approval;
    m.proofJkt = this.proofJkt;
    m.cnfJkt = this.cnfJkt;
    m.toolPath = this.toolPath;
    m.token = this.token;
    m.nhi = this.nhi;
    return m;
  }
}

function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
}
