import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { Router, newTraceId, randomHex, sendError, sendJson, traceIdFrom, type RequestContext, type Logger } from '../core/index.js';

export interface HttpServerOptions {
  router: Router;
  logger: Logger;
  host: string;
  port: number;
  tls?: { cert: string; key: string; clientCa?: string; clientAuth: 'none' | 'optional' | 'required' };
  /** Called once per finished request, for metrics. */
  onResponse?: (route: string, method: string, status: number, seconds: number) => void;
  /**
   * Until it says ready, every request but the probes (`/healthz`, `/readyz`) is answered 503:
   * the listener opens before the routes are mounted and the views loaded (the issuer URL is
   * where it listens), and a request in between must not meet a half-built instance (a 404
   * `no route`, a revocation not yet loaded). Without it, the server serves at once.
   */
  readiness?: Readiness;
}

/** The probes, answered whatever the readiness: liveness, and readiness saying why not. */
const PROBES: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

/**
 * Where an instance is in its life: `starting` (listening, not everything mounted and loaded),
 * `ready`, `draining` (shutting down: still answering what arrives, but reporting not ready so
 * that a load balancer stops sending). One per instance, shared by the listener and `/readyz`.
 */
export class Readiness {
  #state: 'starting' | 'ready' | 'draining' = 'starting';

  get state(): 'starting' | 'ready' | 'draining' {
    return this.#state;
  }

  /** Whether requests are served (ready or draining): false only while starting. */
  get serving(): boolean {
    return this.#state !== 'starting';
  }

  markReady(): void {
    if (this.#state === 'starting') this.#state = 'ready';
  }

  markDraining(): void {
    this.#state = 'draining';
  }
}

export interface RunningServer {
  readonly server: Server;
  /** `http://127.0.0.1:PORT` as actually bound. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting, lets in-flight requests finish for up to graceMs, then closes what is left. */
  close(graceMs?: number): Promise<void>;
}

/** Starts the one HTTP(S) listener; every role mounts its routes on the router it is given. */
export async function startHttpServer(opts: HttpServerOptions): Promise<RunningServer> {
  const handler = (req: IncomingMessage, res: ServerResponse) => void handle(opts, req, res);
  const server: Server = opts.tls
    ? createHttps(
        {
          cert: readFileSync(opts.tls.cert),
          key: opts.tls.key,
          ca: opts.tls.clientCa ? readFileSync(opts.tls.clientCa) : undefined,
          requestCert: opts.tls.clientAuth !== 'none',
          rejectUnauthorized: opts.tls.clientAuth === 'required',
        },
        handler,
      )
    : createHttp(handler);
  // Slowloris and oversized headers are cut off by node:http itself with these.
  server.headersTimeout = 15_000;
  server.requestTimeout = 60_000;
  server.keepAliveTimeout = 5_000;
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host;
  const url = `${opts.tls ? 'https' : 'http'}://${host}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    server,
    url,
    port,
    close(graceMs = 10_000) {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        const t = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, graceMs);
        t.unref();
      });
      return closing;
    },
  };
}

async function handle(opts: HttpServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = process.hrtime.bigint();
  const requestId = randomHex(8);
  const traceId = traceIdFrom(req.headers.traceparent) ?? newTraceId(Date.now());
  let rawUrl = req.url ?? '/';
  res.setHeader('x-request-id', requestId);
  const method = req.method ?? 'GET';
  if (rawUrl.charCodeAt(0) !== 0x2f /* / */) {
    const target = absoluteTarget(rawUrl);
    if (target === undefined) {
      sendJson(res, 400, { error: 'invalid_request', error_description: 'the request target must be a path (/…) or an absolute http(s) URL (RFC 9112 §3.2)' });
      return;
    }
    // RFC 9112 §3.2.2: with an absolute-form target the server ignores Host and uses the target's
    // authority, so routing (per-tool host names), the proxy's checks and what it forwards all
    // see one host and one path.
    req.headers.host = target.authority;
    req.url = rawUrl = target.originForm;
  }
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  if (opts.readiness && !opts.readiness.serving && !PROBES.has(path)) {
    if (opts.onResponse) res.once('finish', () => opts.onResponse!('starting', method, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9));
    // RFC 9110 §15.6.4: 503 with Retry-After; nothing of the request is looked at.
    sendJson(res, 503, { error: 'temporarily_unavailable', error_description: 'this instance is starting; retry shortly' }, { 'retry-after': '1' });
    return;
  }
  const byHost = opts.router.matchHost(req.headers.host);
  const { handler, params, allowed } = byHost ? { handler: byHost, params: {}, allowed: [] } : opts.router.match(method, path);
  const routeLabel = handler ? routeOf(path) : 'unmatched';
  if (opts.onResponse) {
    res.once('finish', () => opts.onResponse!(routeLabel, method, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9));
  }
  const ctx = new ServerRequestContext(req, res, params, path, q < 0 ? '' : rawUrl.slice(q + 1), requestId, traceId, opts.logger);
  try {
    if (!handler) {
      if (allowed.length > 0) sendJson(res, 405, { error: 'method_not_allowed', error_description: `use ${allowed.join(', ')}` }, { allow: allowed.join(', ') });
      else sendJson(res, 404, { error: 'not_found', error_description: `no route for ${path}` });
    } else {
      await handler(ctx);
      if (!res.headersSent && !res.writableEnded) sendJson(res, 204, {});
    }
  } catch (err) {
    sendError(ctx, err);
  }
}

/**
 * An absolute-form request target (RFC 9112 §3.2.2, `http://host:port/path?query`) as its
 * authority (lower-cased) and origin form (`/path?query`, the path exactly as sent, '/' when
 * empty). Undefined for anything else: another scheme, no authority, userinfo (RFC 9110 §4.2.4:
 * never in an http(s) URI sent by a client), a fragment.
 */
function absoluteTarget(raw: string): { authority: string; originForm: string } | undefined {
  const m = /^https?:\/\/([^/?#]*)([^#]*)$/i.exec(raw);
  if (!m) return undefined;
  const authority = m[1]!;
  if (authority === '' || authority.includes('@') || !/^[A-Za-z0-9.\-\[\]:]+$/.test(authority)) return undefined;
  const rest = m[2]!;
  return { authority: authority.toLowerCase(), originForm: rest === '' ? '/' : rest.charCodeAt(0) === 0x3f ? `/${rest}` : rest };
}

/**
 * What a handler gets. A class rather than an object literal with a getter: V8 builds a literal
 * that has an accessor through its runtime on every request (~1.5 µs here), a class instance is
 * an ordinary allocation (~0.1 µs). `log` (a pino child) and `query` are made on first use: most
 * requests (every proxied call that succeeds) use neither, and a pino child per request was a
 * measurable share of the proxy's cost.
 */
class ServerRequestContext implements RequestContext {
  declare principal?: RequestContext['principal'];
  #log: Logger | undefined;
  #query: URLSearchParams | undefined;
  /** The query string without its `?` ('' when none). */
  readonly #rawQuery: string;
  readonly #logger: Logger;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly params: Record<string, string>,
    readonly path: string,
    rawQuery: string,
    readonly requestId: string,
    readonly traceId: string,
    logger: Logger,
  ) {
    this.#rawQuery = rawQuery;
    this.#logger = logger;
  }

  get log(): Logger {
    return (this.#log ??= this.#logger.child({ reqId: this.requestId }));
  }

  get query(): URLSearchParams {
    return (this.#query ??= new URLSearchParams(this.#rawQuery));
  }
}

/** A low-cardinality label for metrics: the first two path segments. */
function routeOf(path: string): string {
  // Without splitting the whole path on every request: the common case has no empty segments.
  const a = path.indexOf('/', 1);
  const b = a < 0 ? -1 : path.indexOf('/', a + 1);
  const first = a < 0 ? path : path.slice(0, b < 0 ? path.length : b);
  if (path.charCodeAt(0) === 0x2f && !first.includes('//') && !first.endsWith('/')) return first;
  const parts = path.split('/').filter(Boolean);
  return `/${parts.slice(0, 2).join('/')}`;
}
