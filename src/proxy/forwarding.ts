import type { IncomingMessage } from 'node:http';
import type { RevocationState } from '../enforcement/index.js';
import { applyQueryCredential, upstreamHeaders } from './headers.js';
import type { Call } from './call.js';
import type { ToolRuntime } from './tools.js';
import type { Upstreams } from './upstream.js';

/** What goes to the tool: the agent's request with the tool's credential in place of the agent's token. */
export class Forwarder {
  constructor(readonly upstreams: Upstreams, private readonly revocations: RevocationState) {}

  /** The upstream path and query: the tool's base path, the path below it ('' for its root), the query (and a query credential). */
  target(call: Call, toolPath: string, rawQuery: string): string {
    return this.upstreams.pathFor(call.rt.tool.id, toolPath) + upstreamQuery(call.rt, rawQuery);
  }

  /** The headers of the upstream hop: the agent's minus what never passes, plus the tool's credential. */
  headers(call: Call): Record<string, string | string[]> {
    const req = call.ctx.req;
    const credential = call.rt.credential;
    return upstreamHeaders(req.headers, {
      clientIp: req.socket.remoteAddress ?? '', proto: isTls(req) ? 'https' : 'http', host: String(req.headers.host ?? ''),
      traceparent: call.trace.traceparent, ...(credential ? { credential } : {}),
    });
  }

  /** Sends the call and streams the tool's answer back (its credential scrubbed), cut off if access is revoked meanwhile. */
  forward(
    call: Call, pathAndQuery: string, headers: Record<string, string | string[]>, body: Buffer | IncomingMessage | undefined,
  ): Promise<{ status: number; sent: number; cut?: string }> {
    const rt = call.rt;
    return this.upstreams.forward(
      { tool: rt.tool, method: call.method, pathAndQuery, headers, body, revoked: this.revokedWhile(call) },
      call.ctx.res, rt.tool.max_response_bytes, rt.responseHeaders,
    );
  }

  /**
   * Why the call may no longer go on, asked before each chunk of its answer is passed on (an MCP
   * event stream lives as long as the session): the same in-memory check as at the start (token,
   * its ancestors and actors, NHI, tool, kill switches), so a revocation or a kill cuts it off.
   */
  private revokedWhile(call: Call): () => string | undefined {
    const facts = call.token!.facts;
    return () => this.revocations.check(facts);
  }
}

/** The query the tool gets (`?…`, or '' without one): the agent's, with the tool's credential when it goes in the query. */
function upstreamQuery(rt: ToolRuntime, rawQuery: string): string {
  const q = rt.credential?.type === 'query' ? applyQueryCredential(rawQuery, rt.credential) : rawQuery;
  return q === '' ? '' : `?${q.replace(/^\?/, '')}`;
}

function isTls(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true;
}
