import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { Pool } from 'undici';
import { OAuthError, type ToolConfig } from '../core/index.js';

/**
 * The upstream hop: one undici Pool per tool (keep-alive, no redirects followed), request
 * bodies streamed with a size cap, response bodies streamed back (server-sent events
 * included) with a size cap, timeouts for the headers and between body chunks.
 */

export interface UpstreamTarget {
  tool: ToolConfig;
  method: string;
  /** Path and query to send upstream, already normalized and with any query credential applied. */
  pathAndQuery: string;
  headers: Record<string, string | string[]>;
  /** A buffered body (MCP, or a body read for an approval digest), or the client request to stream. */
  body: Buffer | IncomingMessage | undefined;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

export class UpstreamError extends OAuthError {
  constructor(description: string, status = 502) {
    super(status === 504 ? 'upstream_timeout' : 'bad_gateway', description, status);
  }
}

export class Upstreams {
  private readonly pools = new Map<string, { pool: Pool; basePath: string }>();

  constructor(tools: readonly ToolConfig[], opts: { connections?: number } = {}) {
    for (const t of tools) {
      const u = new URL(t.upstream);
      const basePath = u.pathname.replace(/\/+$/, '');
      this.pools.set(t.id, {
        pool: new Pool(u.origin, { connections: opts.connections ?? 128, keepAliveTimeout: 30_000, pipelining: 1 }),
        basePath,
      });
    }
  }

  /** The upstream path for a (normalized) path below the tool: its base path joined with it; '' is the base itself. */
  pathFor(toolId: string, rest: string): string {
    const base = this.pools.get(toolId)!.basePath;
    if (rest === '') return base === '' ? '/' : base;
    return `${base}${rest}`;
  }

  async send(t: UpstreamTarget): Promise<UpstreamResponse> {
    const entry = this.pools.get(t.tool.id);
    if (!entry) throw new UpstreamError(`no upstream for ${t.tool.id}`);
    const timeoutMs = t.tool.timeout * 1000;
    let body: Buffer | Readable | undefined;
    if (Buffer.isBuffer(t.body)) body = t.body;
    else if (t.body) body = t.body.pipe(capped(t.tool.max_body_bytes, () => new OAuthError('invalid_request', `request body is larger than ${t.tool.max_body_bytes} bytes`, 413)));
    try {
      const res = await entry.pool.request({
        method: t.method as never,
        path: t.pathAndQuery,
        headers: t.headers,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (err) {
      if (err instanceof OAuthError) throw err;
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof OAuthError) throw cause;
      const code = (err as { code?: string }).code;
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') throw new UpstreamError(`${t.tool.id} did not answer within ${t.tool.timeout}s`, 504);
      throw new UpstreamError(`${t.tool.id} is unreachable`);
    }
  }

  /**
   * Streams an upstream response to the client, cut off after `maxBytes` (the client sees a
   * truncated body and a reset, never more than the cap). Resolves with the bytes sent.
   */
  pipe(up: UpstreamResponse, res: ServerResponse, headers: Record<string, string | string[]>, maxBytes: number): Promise<number> {
    // undici reports a destroyed body as an error ("Request aborted"): always listen for it.
    up.body.on('error', () => {});
    const declared = Number(up.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > maxBytes) {
      up.body.destroy();
      throw new UpstreamError(`the tool's response is larger than ${maxBytes} bytes`);
    }
    res.writeHead(up.status, headers);
    // Server-sent events must reach the agent as they are produced.
    if (String(up.headers['content-type'] ?? '').startsWith('text/event-stream')) res.flushHeaders();
    return new Promise<number>((resolve) => {
      let sent = 0;
      const done = () => resolve(sent);
      up.body.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        if (sent > maxBytes) {
          up.body.destroy();
          res.destroy();
          return done();
        }
        if (!res.write(chunk)) {
          up.body.pause();
          res.once('drain', () => up.body.resume());
        }
      });
      up.body.once('end', () => {
        res.end();
        done();
      });
      up.body.on('error', () => {
        res.destroy();
        done();
      });
      // The agent went away: stop reading from the tool.
      res.once('close', () => {
        if (!up.body.destroyed) up.body.destroy();
        done();
      });
    });
  }

  /** Reads a whole upstream response body up to `maxBytes` (for tools/list filtering). */
  async buffer(up: UpstreamResponse, maxBytes: number): Promise<Buffer> {
    up.body.on('error', () => {});
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of up.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        up.body.destroy();
        throw new UpstreamError(`the tool's response is larger than ${maxBytes} bytes`);
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks, size);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.pool.close().catch(() => {})));
  }
}

/** A pass-through that errors once more than `max` bytes went through. */
function capped(max: number, tooLarge: () => Error): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > max) cb(tooLarge());
      else cb(null, chunk);
    },
  });
}
