import { isUtf8 } from 'node:buffer';
import { OAuthError, argsDigest, readBody } from '../core/index.js';
import { MCP_METHODS } from '../policy/index.js';
import { mediaTypeOf } from './actions.js';
import type { Call } from './call.js';
import type { Checks } from './checks.js';
import { deniedBy, type Decisions } from './decide.js';
import type { Forwarder } from './forwarding.js';
import { responseHeaders } from './headers.js';
import { JSONRPC_ERRORS, JsonRpcParseError, filterToolsListResponse, parseJsonRpcBody, toolsCall, type ParsedRpc, type RpcMessage } from './jsonrpc.js';
import type { CallRecords } from './records.js';
import type { MessageVerdict, Refusals } from './refusals.js';

const MCP_METHOD_SET: ReadonlySet<string> = new Set(MCP_METHODS);

/**
 * An MCP tool's call (Streamable HTTP), after the checks every call passes (pipeline.ts). An MCP
 * server is one endpoint. GET (the server's event stream) and DELETE (end of a session) are
 * actions of their own; a POST's JSON-RPC messages are each named, scoped and decided before
 * anything is sent (one refusal refuses the whole body), then `tool.call_started` is committed for
 * them all, the body forwarded (a `tools/list` answer filtered to what this caller may call) and
 * each message's outcome recorded.
 */
export class McpCalls {
  constructor(
    private readonly checks: Checks,
    private readonly decisions: Decisions,
    private readonly records: CallRecords,
    private readonly refusals: Refusals,
    private readonly forwarder: Forwarder,
  ) {}

  async run(call: Call): Promise<void> {
    this.oneEndpoint(call);
    const rt = call.rt;
    const method = call.method;
    const headers = this.forwarder.headers(call);
    const pathAndQuery = this.forwarder.target(call, '', '');
    if (method === 'GET' || method === 'DELETE') {
      // Streamable HTTP: GET opens the server's event stream, DELETE ends a session (MCP
      // Transports §2.2.3, §2.5). Neither names a tool, but both reach the server with its
      // credential, so each is an action of its own: the token must hold a granted action of this
      // tool (after any step-down), and Cedar decides `mcp:stream` / `mcp:session/delete`. What
      // flows on the stream are the server's requests and notifications; the client's answers come
      // back as POSTs, checked there.
      call.action = method === 'GET' ? 'mcp:stream' : 'mcp:session/delete';
      this.checks.holdsGrantedAction(call);
      const decision = await this.decisions.decide(call);
      if (decision.decision !== 'allow') throw deniedBy(decision, `${call.action} `);
      await this.records.started(call, [call]);
      this.records.called(call, await this.forwarder.forward(call, pathAndQuery, headers, undefined));
      return;
    }
    if (method !== 'POST') throw new OAuthError('invalid_request', 'MCP over Streamable HTTP uses POST, GET or DELETE', 405);
    if (mediaTypeOf(call.ctx.req.headers['content-type']) !== 'application/json') throw new OAuthError('invalid_request', 'Content-Type must be application/json (MCP Streamable HTTP)', 415);
    const raw = await readBody(call.ctx.req, rt.tool.max_body_bytes);
    const parsed = this.parsed(call, raw);
    if (parsed === undefined) return;

    // Every message is decided before anything is sent: one refusal refuses the whole batch,
    // so an allowed call cannot carry a denied one past the proxy.
    const verdicts: MessageVerdict[] = [];
    let listsTools = false;
    let refused = false;
    for (const msg of parsed.messages) {
      const m = call.forMessage();
      const v: MessageVerdict = { msg, call: m };
      verdicts.push(v);
      if (msg.kind === 'response') {
        m.action = 'mcp:response';
        continue;
      }
      if (msg.kind === 'request' && msg.method === 'tools/list') listsTools = true;
      try {
        if (this.named(m, msg)) {
          const decision = await this.decisions.decide(m);
          if (decision.decision !== 'allow') throw m.declared ? deniedBy(decision) : deniedBy(decision, `${msg.method!} `, '');
        }
      } catch (err) {
        v.error = this.refusals.messageRefusal(err);
        refused = true;
      }
    }
    if (refused) {
      this.refusals.batchRefused(call, verdicts, parsed.batch);
      return;
    }

    await this.records.started(call, verdicts.map((v) => v.call));
    // Streamed to the caller as it comes (server-sent events too); a caller that hangs up
    // before the answer still leaves the call's outcome in the log.
    const up = listsTools ? await this.toolsList(call, headers, pathAndQuery, raw) : await this.forwarder.forward(call, pathAndQuery, headers, raw);
    for (const v of verdicts) this.records.called(v.call, up);
  }

  /**
   * An MCP server is one endpoint (MCP Transports, Streamable HTTP: "a single HTTP endpoint
   * path"): the tool's root and nothing else. Any other path or a query is refused here and
   * never forwarded, since the tool's credential would go with it to whatever it names.
   */
  private oneEndpoint(call: Call): void {
    const rest = call.rawRest;
    call.path = rest === '' ? '/' : rest.slice(0, 256);
    if ((rest !== '' && rest !== '/') || (call.ctx.req.url ?? '').includes('?')) {
      throw new OAuthError('not_found', `${call.rt.tool.id} is an MCP tool: its one endpoint is /tools/${call.rt.tool.id}, without a path or query below it`, 404);
    }
  }

  /** The body's JSON-RPC messages; undefined when it is not JSON-RPC (then answered and recorded). */
  private parsed(call: Call, raw: Buffer): ParsedRpc | undefined {
    try {
      // RFC 8259 §8.1: JSON between systems is UTF-8. Decoders replace bad bytes differently (one
      // U+FFFD or two, or refuse), so the arguments decided on here could differ from the server's.
      if (!isUtf8(raw)) throw new JsonRpcParseError(JSONRPC_ERRORS.PARSE_ERROR, 'body is not UTF-8 (RFC 8259 §8.1)');
      return parseJsonRpcBody(raw.toString('utf8'), call.rt.tool.max_body_bytes);
    } catch (err) {
      this.refusals.malformed(call, err);
      return undefined;
    }
  }

  /**
   * Names one message's action and refuses what no policy may allow: an undeclared tool, a tool
   * outside the token's scope, a method the proxy does not know (the list grows with the MCP spec,
   * not by default). True when Cedar decides on it: the client's notifications (initialized,
   * cancelled, progress, roots/list_changed) ask the server for nothing; any other method without
   * an id is decided exactly as the request would be (a `tools/call` notification still runs).
   */
  private named(m: Call, msg: RpcMessage): boolean {
    const method = msg.method!;
    if (msg.kind === 'notification' && method.startsWith('notifications/')) {
      m.action = `mcp:${method.slice(0, 100)}`;
      return false;
    }
    if (method === 'tools/call') {
      const call = toolsCall(msg);
      const action = m.rt.matcher.byName(call.name);
      m.action = action?.name ?? call.name.slice(0, 128);
      if (!action) throw new OAuthError('access_denied', `${m.rt.tool.id} declares no tool named ${JSON.stringify(call.name.slice(0, 128))}`, 403);
      this.checks.inScope(m, action);
      m.declared = action;
      m.args = call.arguments;
      m.argsDigest = argsDigest(call.arguments);
      return true;
    }
    m.action = `mcp:${method.slice(0, 100)}`;
    if (!MCP_METHOD_SET.has(m.action)) throw new OAuthError('access_denied', `the MCP method ${JSON.stringify(method.slice(0, 100))} is not allowed through the proxy`, 403);
    return true;
  }

  /** tools/list answers only with what this caller may call (scope, then policy): read whole, filtered, scrubbed. */
  private async toolsList(call: Call, headers: Record<string, string | string[]>, pathAndQuery: string, raw: Buffer): Promise<{ status: number; sent: number }> {
    const rt = call.rt;
    const upstreams = this.forwarder.upstreams;
    const up = await upstreams.send({ tool: rt.tool, method: call.method, pathAndQuery, headers, body: raw });
    if (up.status !== 200) return { status: up.status, sent: await upstreams.pipe(up, call.ctx.res, rt.responseHeaders(up.headers), rt.tool.max_response_bytes) };
    const body = await upstreams.buffer(up, rt.tool.max_response_bytes);
    const filtered = Buffer.from(filterToolsListResponse(body, String(up.headers['content-type'] ?? ''), (name) => this.decisions.mayCall(call, name)), 'utf8');
    // Scrubbed as rewritten: re-serializing may have turned an escaped secret into a plain one.
    const out = rt.scrubber ? rt.scrubber.all(filtered) : filtered;
    const h = responseHeaders(up.headers, { credential: rt.credential, bodyRewritten: true });
    call.ctx.res.writeHead(up.status, { ...h, 'content-length': out.length });
    call.ctx.res.end(out);
    return { status: up.status, sent: out.length };
  }
}
