import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { checkBearer, listen, readCapped, sendJson, type DemoTool, type DemoToolOptions } from './http-tool.js';

/**
 * A demo upstream MCP server, "docs", over Streamable HTTP at `POST /mcp`, with one tool per
 * risk tier, so that the proxy's per-action tiers can be shown on MCP `tools/call`:
 *
 *   search_docs   read         { query, limit? }         → matching pages
 *   create_page   write        { space, title, body }    → the new page
 *   delete_space  destructive  { space }                 → how many pages went
 *
 * It is stateless (a fresh McpServer and transport per request, no session id); the pages are
 * shared in memory. When `expectedCredential` is set, requests must carry it as a bearer token.
 */
export const DEMO_MCP_MAX_BODY_BYTES = 64 * 1024;
const MAX_PAGES = 10_000;

interface Page {
  id: string;
  space: string;
  title: string;
  body: string;
}

interface DocsState {
  pages: Map<string, Page>;
  nextId: number;
}

const SEED: Array<Omit<Page, 'id'>> = [
  { space: 'eng', title: 'Deploying to production', body: 'Deploys run from the release pipeline after review; roll back with the previous tag.' },
  { space: 'eng', title: 'On-call handbook', body: 'Page the primary first. Escalate after 15 minutes without acknowledgement.' },
  { space: 'eng', title: 'Rotating API credentials', body: 'Credentials rotate every 30 days; the proxy holds the current one.' },
  { space: 'support', title: 'Refund policy', body: 'Refunds within 30 days of purchase, to the original payment method.' },
  { space: 'support', title: 'Resetting a password', body: 'Send the reset link from the admin console; never share passwords by email.' },
];

const text = (value: unknown, isError = false): CallToolResult => ({
  content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) }],
  ...(isError ? { isError: true } : {}),
});

const spaceName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a space key: lowercase letters, digits, "_" or "-"');

function buildServer(state: DocsState): McpServer {
  const server = new McpServer({ name: 'mandate-demo-docs', version: '1.0.0' });

  server.registerTool(
    'search_docs',
    {
      title: 'Search the docs',
      description: 'Full-text search over the documentation pages (read).',
      inputSchema: {
        query: z.string().min(1).max(200).describe('words to look for'),
        limit: z.number().int().min(1).max(20).optional().describe('at most this many results (default 5)'),
      },
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async ({ query, limit }) => {
      const words = query.toLowerCase().split(/\s+/).filter(Boolean);
      const results = [...state.pages.values()]
        .map((p) => ({ p, score: words.filter((w) => `${p.title} ${p.body}`.toLowerCase().includes(w)).length }))
        .filter((r) => r.score > 0)
        .sort((a, b) => b.score - a.score || a.p.id.localeCompare(b.p.id))
        .slice(0, limit ?? 5)
        .map(({ p }) => ({ id: p.id, space: p.space, title: p.title, snippet: p.body.slice(0, 120) }));
      return text({ query, results });
    },
  );

  server.registerTool(
    'create_page',
    {
      title: 'Create a page',
      description: 'Creates a documentation page in a space (write).',
      inputSchema: {
        space: spaceName.describe('space key, e.g. eng'),
        title: z.string().min(1).max(200),
        body: z.string().max(16 * 1024),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    },
    async ({ space, title, body }) => {
      if (state.pages.size >= MAX_PAGES) return text('too many pages', true);
      const page: Page = { id: `p${state.nextId++}`, space, title, body };
      state.pages.set(page.id, page);
      return text({ created: { id: page.id, space, title } });
    },
  );

  server.registerTool(
    'delete_space',
    {
      title: 'Delete a space',
      description: 'Deletes a space and every page in it (destructive).',
      inputSchema: { space: spaceName.describe('space key, e.g. support') },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ space }) => {
      const doomed = [...state.pages.values()].filter((p) => p.space === space);
      if (doomed.length === 0) return text(`no space "${space}"`, true);
      for (const p of doomed) state.pages.delete(p.id);
      return text({ deleted: space, pages: doomed.length });
    },
  );
  return server;
}

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null });
}

export async function startDemoMcpTool(opts: DemoToolOptions = {}): Promise<DemoTool> {
  const state: DocsState = { pages: new Map(), nextId: 1 };
  for (const p of SEED) {
    const id = `p${state.nextId++}`;
    state.pages.set(id, { id, ...p });
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost');
    if (pathname !== '/mcp') {
      req.resume();
      return sendJson(res, 404, { error: 'not_found', message: 'the MCP endpoint is POST /mcp' });
    }
    if (!checkBearer(req, res, opts.expectedCredential, 'docs')) return;
    if (req.method !== 'POST') {
      // Stateless: no server-initiated stream (GET) and no session to end (DELETE).
      req.resume();
      res.setHeader('Allow', 'POST');
      return jsonRpcError(res, 405, -32000, 'Method not allowed: this server is stateless, use POST');
    }
    const raw = await readCapped(req, DEMO_MCP_MAX_BODY_BYTES);
    if (raw === undefined) {
      res.setHeader('Connection', 'close');
      return jsonRpcError(res, 413, -32600, `the request is larger than ${DEMO_MCP_MAX_BODY_BYTES} bytes`);
    }
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return jsonRpcError(res, 400, -32700, 'Parse error');
    }
    const server = buildServer(state);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: !opts.sse });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  };

  const http = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal error');
      else res.destroy();
    });
  });
  return listen(http, opts, '/mcp');
}
