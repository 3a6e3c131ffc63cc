import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * What the adversarial suites attack: a real Mandate (broker + proxy, SQLite, memory bus) in
 * front of two recording upstreams that remember every request they receive, so a suite can
 * assert that a refused request never reached a tool, and what exactly reached it when one did.
 *
 * - `rec`, an HTTP tool with the credential `x-api-key: REC_KEY`:
 *     list_items  GET    /items        read
 *     get_item    GET    /items/{id}   read
 *     create_item POST   /items        write
 *     refund      POST   /refunds      write, held by the `@approval` policy `hold-refunds`
 *     delete_item DELETE /items/{id}   destructive (its tier needs approval)
 * - `mrec`, an MCP tool (the recording upstream stands in for the server) with the credential
 *   `Authorization: Bearer MREC_KEY`: search_docs (read), create_page (write, held by the
 *   `@approval` policy `hold-pages`), delete_space (destructive).
 * - `alice` holds every action of both; `bob` only the read ones.
 */
export const REC_KEY = 'rec-upstream-secret-0123456789abcdef';
export const MREC_KEY = 'mrec-upstream-secret-fedcba9876543210';

export interface Target {
  t: TestApp;
  iss: string;
  rec: RecordingUpstream;
  mrec: RecordingUpstream;
  alice: TestAgent;
  bob: TestAgent;
  /** A bearer (unbound) token for `who` at `tool` with `scope`. */
  token(who: TestAgent, tool: string, scope: string): Promise<string>;
  close(): Promise<void>;
}

export async function startTarget(extra: { policy?: string[]; tools?: Record<string, Record<string, unknown>> } = {}): Promise<Target> {
  const rec = await startRecordingUpstream({ credentialHeader: 'x-api-key' });
  const mrec = await startRecordingUpstream();
  const alice = await testAgent('alice');
  const bob = await testAgent('bob');
  const dir = mkdtempSync(join(tmpdir(), 'mandate-adv-'));
  const policyFile = join(dir, 'adversarial.cedar');
  writeFileSync(policyFile, [
    '@id("hold-refunds") @approval("required")',
    'forbid (principal, action == Mandate::Action::"refund", resource) unless { context.approved };',
    '@id("hold-pages") @approval("required")',
    'forbid (principal, action == Mandate::Action::"create_page", resource) unless { context.approved };',
    ...(extra.policy ?? []),
  ].join('\n'));
  const t = await startTestApp(undefined, {
    nhis: [agentNhi(alice), agentNhi(bob)],
    tools: [
      {
        id: 'rec', kind: 'http', upstream: `${rec.url}/api`, credential: { type: 'header', name: 'x-api-key', value: 'env:REC_KEY' },
        actions: [
          { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
          { name: 'get_item', method: 'GET', path: '/items/{id}', tier: 'read' },
          { name: 'create_item', method: 'POST', path: '/items', tier: 'write' },
          { name: 'refund', method: 'POST', path: '/refunds', tier: 'write' },
          { name: 'delete_item', method: 'DELETE', path: '/items/{id}', tier: 'destructive' },
        ],
        ...(extra.tools?.rec ?? {}),
      },
      {
        id: 'mrec', kind: 'mcp', upstream: `${mrec.url}/mcp`, credential: { type: 'bearer', value: 'env:MREC_KEY' },
        actions: [
          { name: 'search_docs', tier: 'read' },
          { name: 'create_page', tier: 'write' },
          { name: 'delete_space', tier: 'destructive' },
        ],
        ...(extra.tools?.mrec ?? {}),
      },
    ],
    grants: [
      { nhi: 'alice', tool: 'rec', actions: ['*'] },
      { nhi: 'alice', tool: 'mrec', actions: ['*'] },
      { nhi: 'bob', tool: 'rec', actions: ['list_items', 'get_item'] },
      { nhi: 'bob', tool: 'mrec', actions: ['search_docs'] },
    ],
    policy: { files: [policyFile] },
    // Unbound tokens keep the requests plain; the DPoP suite attacks binding itself.
    tokens: {
      profiles: [
        { name: 'read', ttl: '10m', binding: 'optional' },
        { name: 'write', ttl: '5m', binding: 'optional' },
        { name: 'destructive', ttl: '2m', binding: 'optional', approval: true },
      ],
    },
  }, { REC_KEY, MREC_KEY });
  const iss = t.app.issuer;
  return {
    t, iss, rec, mrec, alice, bob,
    token: async (who, tool, scope) => (await clientCredentialsToken(iss, who, `${iss}/tools/${tool}`, scope)).access_token,
    close: async () => {
      await t.app.close();
      await rec.close();
      await mrec.close();
    },
  };
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh socket: the request target, header
 * names, repeats and order, and the body framing are exactly what the test says (node:http's
 * client would normalize some of them). `body` is sent as is; give `content-length` or
 * `transfer-encoding` yourself.
 */
export function rawHttp(url: string, head: string, body: string | Buffer = ''): Promise<RawResponse> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!m) return reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`));
      const split = text.indexOf('\r\n\r\n');
      const headers: IncomingHttpHeaders = {};
      for (const line of text.slice(0, split).split('\r\n').slice(1)) {
        const c = line.indexOf(':');
        headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
      }
      let rest = text.slice(split + 4);
      if (/chunked/i.test(String(headers['transfer-encoding'] ?? ''))) {
        let out = '';
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const n = parseInt(rest.slice(0, nl), 16);
          if (!(n > 0)) break;
          out += rest.slice(nl + 2, nl + 2 + n);
          rest = rest.slice(nl + 2 + n + 2);
        }
        rest = out;
      }
      resolve({ status: Number(m[1]), headers, body: Buffer.from(rest, 'latin1').toString('utf8') });
    });
    let h = head.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '');
    // One request per connection: the server closes after answering `Connection: close`.
    if (!/\r\nconnection:/i.test(h)) h += '\r\nConnection: close';
    sock.write(`${h}\r\n\r\n`);
    if (body.length > 0) sock.write(body);
  });
}

/** A request through node:http (one header value each, normalized framing), for the common cases. */
export function call(
  url: string, path: string, opts: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: opts.method ?? 'GET', path, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** The JSON body of a response, or undefined. */
export function json(r: RawResponse): any {
  try {
    return JSON.parse(r.body);
  } catch {
    return undefined;
  }
}
