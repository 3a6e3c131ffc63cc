import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { secretEquals } from '../core/secrets.js';
import { challenge } from '../core/www-authenticate.js';

/**
 * A demo upstream: a small "tickets" HTTP API that stands for a real SaaS tool behind the
 * proxy. Tickets live in memory. When `expectedCredential` is set, every request must carry
 * `Authorization: Bearer <expectedCredential>`, the tool's real credential, which only the
 * proxy holds and injects: an agent calling this API directly gets 401.
 *
 *   GET    /tickets          list (optionally ?status=open|closed)
 *   GET    /tickets/{id}     one ticket
 *   POST   /tickets          create from a JSON body { title, description?, priority? }
 *   DELETE /tickets/{id}     delete
 */
export interface DemoToolOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  host?: string;
  /** The bearer credential the tool requires; none when unset. */
  expectedCredential?: string;
  /** MCP tool only: answer requests as server-sent event streams instead of JSON bodies. */
  sse?: boolean;
}

export interface DemoTool {
  /** Base URL without a trailing slash (for the MCP tool, the URL of its `/mcp` endpoint). */
  url: string;
  close(): Promise<void>;
}

export interface Ticket {
  id: string;
  title: string;
  description: string;
  priority: 'low' | 'normal' | 'high';
  status: 'open' | 'closed';
  created_at: string;
}

/** Request bodies are capped before they are parsed. */
export const DEMO_HTTP_MAX_BODY_BYTES = 64 * 1024;
/** The store stays small however long the demo runs. */
const MAX_TICKETS = 10_000;
const PRIORITIES = new Set(['low', 'normal', 'high']);

export async function startDemoHttpTool(opts: DemoToolOptions = {}): Promise<DemoTool> {
  const tickets = new Map<string, Ticket>();
  let nextId = 1;
  const add = (t: Omit<Ticket, 'id' | 'created_at'>): Ticket => {
    const ticket: Ticket = { id: String(nextId++), ...t, created_at: new Date().toISOString() };
    tickets.set(ticket.id, ticket);
    return ticket;
  };
  add({ title: 'VPN drops every hour', description: 'Since the client update on Monday.', priority: 'high', status: 'open' });
  add({ title: 'Add dark mode to the status page', description: '', priority: 'low', status: 'closed' });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!checkBearer(req, res, opts.expectedCredential, 'tickets')) return;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] !== 'tickets' || parts.length > 2) return sendJson(res, 404, { error: 'not_found', message: `no route ${url.pathname}` });
    const method = req.method ?? 'GET';

    if (parts.length === 1) {
      if (method === 'GET' || method === 'HEAD') {
        const status = url.searchParams.get('status');
        const list = [...tickets.values()].filter((t) => status === null || t.status === status);
        return sendJson(res, 200, { tickets: list, count: list.length });
      }
      if (method === 'POST') {
        const body = await readJsonBody(req, res, DEMO_HTTP_MAX_BODY_BYTES);
        if (body === undefined) return;
        const { title, description = '', priority = 'normal' } = body;
        if (typeof title !== 'string' || title.trim() === '' || title.length > 200) {
          return sendJson(res, 400, { error: 'invalid_request', message: 'title is required: a string of 1 to 200 characters' });
        }
        if (typeof description !== 'string') return sendJson(res, 400, { error: 'invalid_request', message: 'description must be a string' });
        if (typeof priority !== 'string' || !PRIORITIES.has(priority)) {
          return sendJson(res, 400, { error: 'invalid_request', message: 'priority must be low, normal or high' });
        }
        if (tickets.size >= MAX_TICKETS) return sendJson(res, 507, { error: 'insufficient_storage', message: 'too many tickets' });
        const ticket = add({ title: title.trim(), description, priority: priority as Ticket['priority'], status: 'open' });
        res.setHeader('Location', `/tickets/${ticket.id}`);
        return sendJson(res, 201, ticket);
      }
      return methodNotAllowed(res, 'GET, HEAD, POST');
    }

    let id: string;
    try {
      id = decodeURIComponent(parts[1]!);
    } catch {
      return sendJson(res, 400, { error: 'invalid_request', message: 'malformed ticket id' });
    }
    const ticket = tickets.get(id);
    if (method === 'GET' || method === 'HEAD' || method === 'DELETE') {
      if (!ticket) return sendJson(res, 404, { error: 'not_found', message: `no ticket ${JSON.stringify(id)}` });
      if (method === 'DELETE') {
        tickets.delete(id);
        return sendJson(res, 200, { id, deleted: true });
      }
      return sendJson(res, 200, ticket);
    }
    return methodNotAllowed(res, 'GET, HEAD, DELETE');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', message: 'internal error' });
      else res.destroy();
    });
  });
  return listen(server, opts, '');
}

/**
 * Answers 401 unless the request carries `Authorization: Bearer <expected>` (compared in
 * constant time). Returns whether the request may go on; no expectation means no check.
 */
export function checkBearer(req: IncomingMessage, res: ServerResponse, expected: string | undefined, realm: string): boolean {
  if (expected === undefined) return true;
  const header = req.headers.authorization ?? '';
  const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
  if (m && secretEquals(m[1]!, expected)) return true;
  res.setHeader('WWW-Authenticate', challenge('Bearer', { realm, error: header ? 'invalid_token' : undefined }));
  sendJson(res, 401, { error: 'unauthorized', message: 'this tool requires its bearer credential' });
  req.resume();
  return false;
}

/**
 * Reads a JSON object body of at most `maxBytes`. On a problem it answers (413, 415 or 400)
 * and returns undefined. An oversized body is refused as soon as it is known to be too big
 * (Content-Length, or the running count), and the rest is discarded without being kept.
 */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse, maxBytes: number): Promise<Record<string, unknown> | undefined> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    req.resume();
    sendJson(res, 415, { error: 'unsupported_media_type', message: 'Content-Type must be application/json' });
    return undefined;
  }
  const text = await readCapped(req, maxBytes);
  if (text === undefined) {
    res.setHeader('Connection', 'close');
    sendJson(res, 413, { error: 'payload_too_large', message: `the body is larger than ${maxBytes} bytes` });
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    sendJson(res, 400, { error: 'invalid_request', message: 'the body is not valid JSON' });
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    sendJson(res, 400, { error: 'invalid_request', message: 'the body must be a JSON object' });
    return undefined;
  }
  return value as Record<string, unknown>;
}

/** The body as UTF-8, or undefined when it exceeds `maxBytes` (the rest is then drained, not kept). */
export async function readCapped(req: IncomingMessage, maxBytes: number): Promise<string | undefined> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  // destroyOnReturn: false keeps the socket open after an early return, so the 413 can still be sent.
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      req.resume();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.setHeader('Cache-Control', 'no-store');
  res.end(res.req?.method === 'HEAD' ? undefined : text);
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('Allow', allow);
  sendJson(res, 405, { error: 'method_not_allowed', message: `allowed: ${allow}` });
}

/** Listens, and returns the base URL (plus `path`) and a close() that also ends idle keep-alive connections. */
export async function listen(server: Server, opts: DemoToolOptions, path: string): Promise<DemoTool> {
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostInUrl}:${port}${path}`,
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
