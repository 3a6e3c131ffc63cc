import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { OAuthError, type ToolConfig } from '../core/index.js';
import { askForScrubbableBody, startsWithWideBom, unscrubbable, type SecretScrubber } from './scrub.js';

/**
 * The upstream hop: one undici Pool per tool (keep-alive, no redirects followed), request
 * bodies streamed with a size cap, response bodies streamed back (server-sent events
 * included) with a size cap, timeouts for the headers and between body chunks. A tool with a
 * scrubber (scrub.ts) has the secret forms of its credential filled in every response body on
 * the way back (`forward`, `pipe`; what `buffer` reads is scrubbed by its caller after rewriting),
 * is asked for identity-encoded bodies, and a body still encoded is refused (502).
 */

export interface UpstreamTarget {
  tool: ToolConfig;
  method: string;
  /** Path and query to send upstream, already normalized and with any query credential applied. */
  pathAndQuery: string;
  headers: Record<string, string | string[]>;
  /** A buffered body (MCP, or a body read for an approval digest), or the client request to stream. */
  body: Buffer | IncomingMessage | undefined;
  /**
   * Asked before each chunk of the answer is passed on: why the call may no longer continue
   * (its token revoked, its NHI killed), or undefined. A long answer (an MCP event stream) is cut
   * off when access is taken back, not only when it ends.
   */
  revoked?: () => string | undefined;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
  /** The tool's scrubber, when its response bodies are scrubbed (`pipe` applies it). */
  scrubber?: SecretScrubber;
}

export class UpstreamError extends OAuthError {
  constructor(description: string, status = 502) {
    super(status === 504 ? 'upstream_timeout' : 'bad_gateway', description, status);
  }
}

export class Upstreams {
  private readonly pools = new Map<string, { pool: Pool; basePath: string }>();
  /** Tool id → the scrubber of its credential, for the tools whose response bodies are scrubbed. */
  private readonly scrubbers: ReadonlyMap<string, SecretScrubber>;

  constructor(tools: readonly ToolConfig[], opts: { connections?: number; scrubbers?: ReadonlyMap<string, SecretScrubber> } = {}) {
    this.scrubbers = opts.scrubbers ?? new Map();
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
    const scrubber = this.scrubbers.get(t.tool.id);
    if (scrubber) askForScrubbableBody(t.headers);
    let res: Dispatcher.ResponseData;
    try {
      res = await entry.pool.request({
        method: t.method as never,
        path: t.pathAndQuery,
        headers: t.headers,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (err) {
      throw upstreamFailure(err, t.tool.id, t.tool.timeout);
    }
    if (scrubber) {
      const why = unscrubbable(t.method, res.statusCode, res.headers);
      if (why !== undefined) {
        res.body.on('error', () => {});
        res.body.destroy();
        throw new UpstreamError(why);
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, scrubber };
    }
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  /**
   * Sends the request and streams the answer straight to `res`: undici's `dispatch` with a
   * handler that writes each chunk to the client as it arrives (no intermediate Readable, no
   * buffering), with the client's backpressure passed back to the upstream connection. The
   * same rules as `send` + `pipe`: a declared length over `maxBytes` is a 502 before anything
   * is written, a body that grows past it is cut off (the client sees a truncated body and a
   * reset), server-sent events are flushed as they come, the timeouts are the tool's, and a
   * client that goes away aborts the upstream request. `headers` maps the upstream's response
   * headers to the client's (responseHeaders). A tool with a scrubber has its body scrubbed
   * chunk by chunk (scrub.ts: same length, only a possible start of a secret held back between
   * chunks) and an encoded body refused before anything is written. Resolves with the status
   * and the bytes sent (and `cut`, the reason, when `t.revoked` cut the answer off); rejects
   * (UpstreamError, or the OAuthError of a request body over its cap) only while nothing has been
   * written to `res`.
   */
  forward(
    t: UpstreamTarget, res: ServerResponse, maxBytes: number,
    headers: (upstream: Record<string, string | string[] | undefined>) => Record<string, string | string[]>,
  ): Promise<{ status: number; sent: number; cut?: string }> {
    const entry = this.pools.get(t.tool.id);
    if (!entry) return Promise.reject(new UpstreamError(`no upstream for ${t.tool.id}`));
    const timeoutMs = t.tool.timeout * 1000;
    const revoked = t.revoked;
    let body: Buffer | Readable | undefined;
    if (Buffer.isBuffer(t.body)) body = t.body;
    else if (t.body) body = t.body.pipe(capped(t.tool.max_body_bytes, () => new OAuthError('invalid_request', `request body is larger than ${t.tool.max_body_bytes} bytes`, 413)));
    const toolId = t.tool.id;
    const toolTimeout = t.tool.timeout;
    const scrubber = this.scrubbers.get(toolId);
    if (scrubber) askForScrubbableBody(t.headers);
    const method = t.method;
    return new Promise<{ status: number; sent: number; cut?: string }>((resolve, reject) => {
      let status = 0;
      let sent = 0;
      let cut: string | undefined;
      let settled = false;
      let ctl: Dispatcher.DispatchController | undefined;
      const scrub = scrubber?.open();
      const finish = () => {
        if (settled) return;
        settled = true;
        res.off('close', onClose);
        res.off('drain', onDrain);
        resolve(cut === undefined ? { status, sent } : { status, sent, cut });
      };
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        res.off('close', onClose);
        reject(err);
      };
      // The agent went away after the tool answered: stop reading from the tool. (Before the
      // answer the exchange runs to its headers, as the tool has the request, and is recorded.)
      const onClose = () => {
        if (!settled) ctl?.abort(new UpstreamError('the client went away'));
        finish();
      };
      const onDrain = () => ctl?.resume();
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(controller) {
          ctl = controller;
        },
        onResponseStart(controller, statusCode, upHeaders) {
          // 1xx informational answers are not relayed (as with request()); the final one follows.
          if (statusCode < 200 || settled) return;
          const declared = Number(upHeaders['content-length'] ?? NaN);
          if (Number.isFinite(declared) && declared > maxBytes) {
            controller.abort(new UpstreamError(`the tool's response is larger than ${maxBytes} bytes`));
            return;
          }
          if (scrubber) {
            const why = unscrubbable(method, statusCode, upHeaders);
            if (why !== undefined) {
              controller.abort(new UpstreamError(why));
              return;
            }
          }
          let out: Record<string, string | string[]>;
          try {
            out = headers(upHeaders);
          } catch (err) {
            controller.abort(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          status = statusCode;
          if (res.destroyed) {
            controller.abort(new UpstreamError('the client went away'));
            finish();
            return;
          }
          res.once('close', onClose);
          res.writeHead(statusCode, out);
          // Server-sent events must reach the agent as they are produced.
          const type = upHeaders['content-type'];
          if (typeof type === 'string' && type.startsWith('text/event-stream')) res.flushHeaders();
        },
        onResponseData(controller, chunk) {
          if (settled) return;
          cut = revoked?.();
          if (cut !== undefined) {
            // Access was taken back while the answer flowed: nothing more reaches the agent.
            controller.abort(new UpstreamError(`access was revoked (${cut})`));
            res.destroy();
            finish();
            return;
          }
          sent += chunk.length;
          if (sent > maxBytes) {
            controller.abort(new UpstreamError(`the tool's response is larger than ${maxBytes} bytes`));
            res.destroy();
            finish();
            return;
          }
          if (scrub && sent === chunk.length && startsWithWideBom(chunk)) {
            // UTF-16/32 text not labelled as such: the secret's bytes would not be found in it.
            controller.abort(new UpstreamError('the tool answered in UTF-16 or UTF-32 text: the proxy cannot check it for the tool\'s credential'));
            res.destroy();
            finish();
            return;
          }
          const out = scrub ? scrub.push(chunk) : chunk;
          if (out.length > 0 && !res.write(out)) {
            controller.pause();
            res.once('drain', onDrain);
          }
        },
        onResponseEnd() {
          if (settled) return;
          const rest = scrub?.end();
          if (rest !== undefined && rest.length > 0) res.end(rest);
          else res.end();
          finish();
        },
        onResponseError(_controller, err) {
          if (settled) return;
          if (status !== 0) {
            // Headers are out: the client sees a reset instead of a clean end.
            res.destroy();
            finish();
            return;
          }
          fail(upstreamFailure(err, toolId, toolTimeout));
        },
      };
      try {
        entry.pool.dispatch({
          method: t.method as never, path: t.pathAndQuery, headers: t.headers, body: body ?? null,
          headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
        }, handler);
      } catch (err) {
        fail(upstreamFailure(err, toolId, toolTimeout));
      }
    });
  }

  /**
   * Streams an upstream response to the client, cut off after `maxBytes` (the client sees a
   * truncated body and a reset, never more than the cap), scrubbed when `up` has a scrubber.
   * Resolves with the bytes sent.
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
    const scrub = up.scrubber?.open();
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
        if (scrub && sent === chunk.length && startsWithWideBom(chunk)) {
          up.body.destroy();
          res.destroy();
          return done();
        }
        const out = scrub ? scrub.push(chunk) : chunk;
        if (out.length > 0 && !res.write(out)) {
          up.body.pause();
          res.once('drain', () => up.body.resume());
        }
      });
      up.body.once('end', () => {
        const rest = scrub?.end();
        if (rest !== undefined && rest.length > 0) res.end(rest);
        else res.end();
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

/** The error a failed upstream exchange becomes: the request body's own refusal, a timeout (504) or 502. */
function upstreamFailure(err: unknown, toolId: string, timeoutS: number): OAuthError {
  if (err instanceof OAuthError) return err;
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof OAuthError) return cause;
  const code = (err as { code?: string }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new UpstreamError(`${toolId} did not answer within ${timeoutS}s`, 504);
  return new UpstreamError(`${toolId} is unreachable`);
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
