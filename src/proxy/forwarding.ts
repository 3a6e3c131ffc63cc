import type { IncomingMessage } from 'node:http';
import { applyQueryCredential, upstreamHeaders } from './headers.js';
import type { Call } from './call.js';
import type { ToolRuntime } from './tools.js';

/** The headers of the upstream hop: the agent's minus what never passes, plus the tool's credential. */
export function forwardHeaders(call: Call): Record<string, string | string[]> {
  const req = call.ctx.req;
  const credential = call.rt.credential;
  return upstreamHeaders(req.headers, {
    clientIp: req.socket.remoteAddress ?? '', proto: isTls(req) ? 'https' : 'http', host: String(req.headers.host ?? ''),
    traceparent: call.trace.traceparent, ...(credential ? { credential } : {}),
  });
}

/** The query the tool gets (`?…`, or '' without one): the agent's, with the tool's credential when it goes in the query. */
export function upstreamQuery(rt: ToolRuntime, rawQuery: string): string {
  const q = rt.credential?.type === 'query' ? applyQueryCredential(rawQuery, rt.credential) : rawQuery;
  return q === '' ? '' : `?${q.replace(/^\?/, '')}`;
}

function isTls(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true;
}
