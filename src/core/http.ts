import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from './logger.js';
import { OAuthError, ValidationError, toHttpError } from './errors.js';
import { challenge } from './www-authenticate.js';

/**
 * The HTTP primitives every capability uses: a small router over node:http and body readers
 * that cap sizes before parsing. node:http is used directly (not Web Request/Response) because
 * the proxy's per-request budget is a fraction of a millisecond; see docs/architecture.md.
 */
export interface RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Path parameters from the route (`/nhis/:id` → `params.id`), percent-decoded. */
  readonly params: Record<string, string>;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly requestId: string;
  /** W3C trace id from `traceparent`, or a fresh one. */
  readonly traceId: string;
  readonly log: Logger;
  /** Set by authentication steps (admin credential id, NHI id). */
  principal?: { id: string; role?: string; kind: 'admin' | 'nhi' };
}

export type Handler = (ctx: RequestContext) => Promise<void> | void;

interface Route {
  method: string;
  segments: string[];
  /** A trailing `*` matches the rest of the path (`params['*']`). */
  wildcard: boolean;
  handler: Handler;
}

/** Routes by method and path segments. Literal segments win over `:params` at equal length. */
export class Router {
  private readonly routes: Route[] = [];
  /**
   * The routes that can match a path whose first segment is the key, in `routes` order: those
   * whose first segment is that literal, a `:param`, or that have none (`/*`). Paths whose first
   * segment no route names get `anyFirst`. A route whose first segment is another literal cannot
   * match, so leaving it out changes no answer; without it each proxied call walked every route.
   */
  private byFirst = new Map<string, Route[]>();
  private anyFirst: Route[] = [];
  private hostHandler: ((host: string) => Handler | undefined) | undefined;

  /** Routes whole host names before paths (the proxy's per-tool host names). */
  setHostHandler(fn: (host: string) => Handler | undefined): this {
    this.hostHandler = fn;
    return this;
  }

  /** The handler for a `Host` header, when one claims it. */
  matchHost(host: string | undefined): Handler | undefined {
    return host && this.hostHandler ? this.hostHandler(host.toLowerCase()) : undefined;
  }

  add(method: string, path: string, handler: Handler): this {
    const segments = path.split('/').filter(Boolean);
    const wildcard = segments[segments.length - 1] === '*';
    if (wildcard) segments.pop();
    this.routes.push({ method: method.toUpperCase(), segments, wildcard, handler });
    // More literal segments first, so `/nhis/export` beats `/nhis/:id`.
    this.routes.sort((a, b) => score(b) - score(a));
    this.index();
    return this;
  }

  get(path: string, h: Handler): this {
    return this.add('GET', path, h);
  }
  post(path: string, h: Handler): this {
    return this.add('POST', path, h);
  }

  /** Finds the handler; `allowed` lists methods that match the path when the method does not. */
  match(method: string, path: string): { handler?: Handler; params: Record<string, string>; allowed: string[] } {
    const parts = path.split('/').filter(Boolean);
    const allowed: string[] = [];
    const candidates = (parts.length > 0 ? this.byFirst.get(parts[0]!) : undefined) ?? this.anyFirst;
    for (const r of candidates) {
      const params = matchSegments(r, parts);
      if (!params) continue;
      if (r.method === method || (method === 'HEAD' && r.method === 'GET')) return { handler: r.handler, params, allowed };
      allowed.push(r.method);
    }
    return { params: {}, allowed };
  }

  private index(): void {
    const firsts = new Set<string>();
    for (const r of this.routes) if (r.segments.length > 0 && !r.segments[0]!.startsWith(':')) firsts.add(r.segments[0]!);
    const byFirst = new Map<string, Route[]>();
    for (const f of firsts) byFirst.set(f, this.routes.filter((r) => r.segments.length === 0 || r.segments[0]!.startsWith(':') || r.segments[0] === f));
    this.byFirst = byFirst;
    this.anyFirst = this.routes.filter((r) => r.segments.length === 0 || r.segments[0]!.startsWith(':'));
  }
}

function score(r: Route): number {
  return r.segments.reduce((s, seg) => s + (seg.startsWith(':') ? 1 : 3), 0) - (r.wildcard ? 1 : 0);
}

function matchSegments(r: Route, parts: string[]): Record<string, string> | undefined {
  if (r.wildcard ? parts.length < r.segments.length : parts.length !== r.segments.length) return undefined;
  // The literals first: most routes fail there, before any params object is made.
  for (let i = 0; i < r.segments.length; i++) {
    const seg = r.segments[i]!;
    if (seg.charCodeAt(0) !== 0x3a /* : */ && seg !== parts[i]) return undefined;
  }
  const params: Record<string, string> = {};
  for (let i = 0; i < r.segments.length; i++) {
    const seg = r.segments[i]!;
    if (seg.charCodeAt(0) !== 0x3a) continue;
    try {
      params[seg.slice(1)] = decodeURIComponent(parts[i]!);
    } catch {
      return undefined;
    }
  }
  if (r.wildcard) params['*'] = parts.slice(r.segments.length).join('/');
  return params;
}

/** Reads a body up to `maxBytes`; a larger one is refused with 413 before it is all read. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw new PayloadTooLargeError(maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      req.resume();
      throw new PayloadTooLargeError(maxBytes);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

export class PayloadTooLargeError extends OAuthError {
  constructor(maxBytes: number) {
    super('invalid_request', `request body is larger than ${maxBytes} bytes`, 413);
  }
}

/** Parses a JSON body (object only). Duplicate member names are refused (RFC 8259 §4 leaves them undefined). */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new ValidationError('Content-Type must be application/json');
  const buf = await readBody(req, maxBytes);
  return parseJsonObject(buf.toString('utf8'));
}

/** JSON.parse for untrusted input: an object at the top, no duplicate member names. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ValidationError('body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ValidationError('body must be a JSON object');
  if (hasDuplicateKeys(text)) throw new ValidationError('body has duplicate member names');
  return value as Record<string, unknown>;
}

/**
 * Detects repeated member names in one JSON object. JSON.parse keeps the last one silently,
 * which lets two parsers disagree about a token or request (RFC 8725 §2.9 on JSON ambiguity).
 * A single pass over the text tracking object scopes; strings are skipped with escapes.
 */
export function hasDuplicateKeys(text: string): boolean {
  const stack: Array<Set<string> | null> = [];
  let i = 0;
  let expectKey = false;
  let bs = text.indexOf('\\');
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      // Skip to the closing quote (an escaped one does not close); the key text is only
      // sliced out, and only unescaped, when it is a member name.
      let j = i + 1;
      let escaped = false;
      for (;;) {
        const q = text.indexOf('"', j);
        // The next backslash at or after j (found once per backslash, not once per string).
        if (bs !== -1 && bs < j) bs = text.indexOf('\\', j);
        if (bs !== -1 && (q === -1 || bs < q)) {
          escaped = true;
          j = bs + 2;
          continue;
        }
        j = q === -1 ? text.length : q;
        break;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const raw = text.slice(i + 1, j);
        const key = escaped ? (JSON.parse(`"${raw}"`) as string) : raw;
        if (top.has(key)) return true;
        top.add(key);
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ',') expectKey = stack[stack.length - 1] != null;
    i++;
  }
  return false;
}

/** Reads an `application/x-www-form-urlencoded` body; a parameter given twice is refused (RFC 6749 §3.1). */
export async function readForm(req: IncomingMessage, maxBytes: number): Promise<Map<string, string>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new OAuthError('invalid_request', 'Content-Type must be application/x-www-form-urlencoded');
  }
  const buf = await readBody(req, maxBytes);
  const out = new Map<string, string>();
  for (const [k, v] of new URLSearchParams(buf.toString('utf8'))) {
    if (out.has(k)) throw new OAuthError('invalid_request', `parameter "${k}" is repeated`);
    out.set(k, v);
  }
  return out;
}

/** Writes a JSON response with no-store caching (every body Mandate returns is about access). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

/** Serializes any error as JSON; unknown errors become `server_error` and are logged, never sent. */
export function sendError(ctx: Pick<RequestContext, 'res' | 'log'>, err: unknown): void {
  const { status, body } = toHttpError(err);
  if (status >= 500) ctx.log.error({ err }, 'request failed');
  if (ctx.res.headersSent) {
    ctx.res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (err instanceof OAuthError && err.status === 401) {
    headers['www-authenticate'] = challenge('Bearer', { error: err.error, error_description: err.message });
  }
  sendJson(ctx.res, status, body, headers);
}

/** Extracts the trace id from a W3C `traceparent` header, when it is well formed. */
export function traceIdFrom(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(header.trim());
  if (!m || /^0+$/.test(m[1]!)) return undefined;
  return m[1];
}
