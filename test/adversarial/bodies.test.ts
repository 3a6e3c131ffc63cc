import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent, type TestAgent } from '../helpers/agent.js';
import { SecretScrubber } from '../../src/proxy/scrub.js';
import { secretForms, type InjectedCredential } from '../../src/proxy/headers.js';

/**
 * Response bodies: the tool's credential (issue 15, item 9). Each tool below gets its real
 * credential injected on the upstream hop, and the upstream echoes what it was sent, the way
 * real tools do by accident: a JSON body reflecting the request, an HTML error page quoting the
 * Authorization header, server-sent events, the request URL with a query credential, PHP-style
 * `\/` escapes, an MCP server's `tools/list` and `tools/call` answers. The agent must never
 * read the secret in any form the proxy knows; bodies without it pass byte for byte.
 */

/** Plain: its one form is itself. */
const HDR_KEY = 'hdr-secret-0123456789abcdefABCDEF';
/** `/`, `"` and `\`: JSON escapes it (`\"`, `\\`, and `\/` for some serializers), HTML too (`&quot;`). */
const BEAR_KEY = 'bear/"secret\\0123456789+xyz';
const BASIC_USER = 'svc';
const BASIC_PASS = 'basic-pass-0123456789abcdef';
/** Percent-encoded on the way (space, `/`, `+`, `=`, `&`, `'`); contains `*`, so the filler is another byte. */
const QUERY_KEY = "q key/+=&!'*~0123456789";
const OPT_KEY = 'optout-secret-0123456789abcdef';
const MCP_KEY = 'mcp-secret-0123456789abcdef/xyz';
const BASIC_B64 = Buffer.from(`${BASIC_USER}:${BASIC_PASS}`).toString('base64');

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void | Promise<void>;

interface Echo {
  url: string;
  close(): Promise<void>;
  /** Requests seen, in order. */
  seen: Array<{ url: string; headers: IncomingHttpHeaders }>;
  /** The answer to `/t/<tool>/r/custom`, set by a test. */
  custom: Handler | undefined;
  /** How the MCP server answers (`/t/mcp`). */
  mcpMode: 'json' | 'sse' | 'gzip' | 'error';
}

/** What the tool saw of the request, as a JSON object: the echo most debug endpoints give. */
function reflect(req: IncomingMessage): Record<string, unknown> {
  const u = new URL(req.url ?? '/', 'http://x');
  const auth = String(req.headers.authorization ?? '');
  return {
    method: req.method, url: req.url, headers: req.headers, query: Object.fromEntries(u.searchParams),
    ...(auth.startsWith('Basic ') ? { basic: Buffer.from(auth.slice(6), 'base64').toString('utf8') } : {}),
  };
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

async function startEcho(): Promise<Echo> {
  const echo: Echo = {
    url: '', seen: [], custom: undefined, mcpMode: 'json',
    close: async () => {},
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      echo.seen.push({ url: req.url ?? '', headers: req.headers });
      const path = (req.url ?? '/').split('?')[0]!;
      const body = Buffer.concat(chunks).toString('utf8');
      if (path === '/t/mcp') return mcpAnswer(echo, req, res, body);
      const route = path.replace(/^\/t\/[a-z]+/, '');
      const json = JSON.stringify(reflect(req));
      switch (route) {
        case '/r/json':
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
          return;
        case '/r/json-chunked': {
          // No content-length; two writes, the second a tick later.
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
          const half = Math.floor(json.length / 2);
          res.write(json.slice(0, half));
          setImmediate(() => res.end(json.slice(half)));
          return;
        }
        case '/r/php': {
          // PHP's json_encode escapes "/" as "\/" (RFC 8259 §7 allows it).
          const php = json.replace(/\//g, '\\/');
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(php) }).end(php);
          return;
        }
        case '/r/html': {
          const page = `<!doctype html><html><body><h1>500 Internal Server Error</h1><pre>\n${Object.entries(req.headers)
            .map(([k, v]) => `${escapeHtml(k)}: ${escapeHtml(String(v))}`).join('\n')}\nurl: ${escapeHtml(req.url ?? '')}</pre></body></html>`;
          res.writeHead(500, { 'content-type': 'text/html; charset=utf-8' }).end(page);
          return;
        }
        case '/r/octet':
          // The type an agent could ask for (Accept) to get an echo past a text-only check.
          res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(json);
          return;
        case '/r/gzip': {
          // Compressed whatever it was asked.
          const gz = gzipSync(json);
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gz.length });
          res.end(req.method === 'HEAD' ? undefined : gz);
          return;
        }
        case '/r/custom':
          if (echo.custom) return void echo.custom(req, res, body);
          break;
        default:
          break;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  echo.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  echo.close = () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  return echo;
}

/** An MCP server that tells its caller what credential it got, in `tools/list` and `tools/call` answers. */
function mcpAnswer(echo: Echo, req: IncomingMessage, res: ServerResponse, body: string): void {
  const msg = JSON.parse(body) as { id: number; method: string };
  const auth = String(req.headers.authorization ?? '');
  const esc = (s: string) => JSON.stringify(s).slice(1, -1);
  // `also` spells the secret's first letter as a \u escape: the proxy's tools/list filter
  // re-serializes the JSON, which turns it back into the plain secret.
  const secret = auth.replace(/^Bearer /, '');
  const also = `\\u${secret.charCodeAt(0).toString(16).padStart(4, '0')}${esc(secret.slice(1))}`;
  const text = msg.method === 'tools/list'
    ? `{"jsonrpc":"2.0","id":${msg.id},"result":{"tools":[{"name":"search_docs","description":"called with ${esc(auth)}","also":"${also}","inputSchema":{"type":"object"}},{"name":"not_granted","description":"${esc(auth)}"}]}}`
    : JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: `you sent ${auth}` }] } });
  switch (echo.mcpMode) {
    case 'json':
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
      return;
    case 'sse':
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: message\ndata: ${text}\n\n`);
      res.end();
      return;
    case 'gzip': {
      const gz = gzipSync(text);
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gz.length }).end(gz);
      return;
    }
    case 'error':
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`internal error; request had authorization: ${auth}`);
      return;
  }
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function send(base: string, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A response read as it arrives: `until` resolves once what has arrived satisfies the condition (checked on every chunk, no timer). */
interface Live {
  status: number;
  text(): string;
  until(cond: (text: string) => boolean): Promise<void>;
  ended: Promise<void>;
}

function live(base: string, path: string, headers: Record<string, string>): Promise<Live> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, headers }, (res) => {
      let text = '';
      const waiting: Array<{ cond: (t: string) => boolean; done: () => void }> = [];
      const check = () => {
        for (let i = waiting.length - 1; i >= 0; i--) {
          if (waiting[i]!.cond(text)) waiting.splice(i, 1)[0]!.done();
        }
      };
      let endedResolve!: () => void;
      const ended = new Promise<void>((r) => (endedResolve = r));
      res.setEncoding('latin1');
      res.on('data', (c: string) => {
        text += c;
        check();
      });
      res.on('end', endedResolve);
      resolve({
        status: res.statusCode ?? 0,
        text: () => text,
        until: (cond) => new Promise<void>((done) => {
          if (cond(text)) return done();
          waiting.push({ cond, done });
        }),
        ended,
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

/** True when `body` shows none of `forms`. */
function showsNone(body: Buffer | string, forms: readonly string[]): boolean {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  return forms.every((f) => !b.includes(Buffer.from(f, 'utf8')) && !b.includes(Buffer.from(f, 'latin1')));
}

/** `s.split(form).join(filler of its length)` for each form in turn: the one-shot oracle. */
function oracle(body: Buffer, forms: readonly Buffer[], filler: number): Buffer {
  let s = body.toString('latin1');
  for (const f of forms) s = s.split(f.toString('latin1')).join(String.fromCharCode(filler).repeat(f.length));
  return Buffer.from(s, 'latin1');
}

/** Streams `chunks` through a fresh scrub of `scrubber`, as the proxy does. */
function streamed(scrubber: SecretScrubber, chunks: readonly Buffer[]): Buffer {
  const s = scrubber.open();
  const out = chunks.map((c) => s.push(c));
  out.push(s.end());
  return Buffer.concat(out);
}

/** Cuts `body` at the given positions (sorted, deduplicated, inside the body). */
function cut(body: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.map((p) => p % (body.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(body.subarray(from, p));
    from = p;
  }
  chunks.push(body.subarray(from));
  return chunks;
}

describe("response bodies: the tool's credential", () => {
  describe('through the proxy', () => {
    let up: Echo;
    let t: TestApp;
    let iss: string;
    let agent: TestAgent;
    const tokens = new Map<string, string>();

    before(async () => {
      up = await startEcho();
      agent = await testAgent('echo-reader');
      const httpActions = [
        { name: 'read_r', method: 'GET' as const, path: '/r/{what}', tier: 'read' },
        { name: 'head_r', method: 'HEAD' as const, path: '/r/{what}', tier: 'read' },
      ];
      t = await startTestApp(undefined, {
        tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
        nhis: [agentNhi(agent)],
        tools: [
          { id: 'hdr', kind: 'http', upstream: `${up.url}/t/hdr`, credential: { type: 'header', name: 'X-Api-Key', value: 'env:HDR_KEY' }, actions: httpActions },
          { id: 'bear', kind: 'http', upstream: `${up.url}/t/bear`, credential: { type: 'bearer', value: 'env:BEAR_KEY' }, actions: httpActions },
          { id: 'bas', kind: 'http', upstream: `${up.url}/t/bas`, credential: { type: 'basic', username: BASIC_USER, value: 'env:BASIC_PASS' }, actions: httpActions },
          { id: 'qry', kind: 'http', upstream: `${up.url}/t/qry`, credential: { type: 'query', name: 'api_key', value: 'env:QUERY_KEY' }, actions: httpActions },
          {
            id: 'opt', kind: 'http', upstream: `${up.url}/t/opt`, credential: { type: 'header', name: 'X-Api-Key', value: 'env:OPT_KEY' },
            scrub_response_secrets: false, actions: httpActions,
          },
          {
            id: 'mcp', kind: 'mcp', upstream: `${up.url}/t/mcp`, credential: { type: 'bearer', value: 'env:MCP_KEY' },
            actions: [{ name: 'search_docs', tier: 'read' }, { name: 'not_granted', tier: 'read' }],
          },
        ],
        grants: [
          ...['hdr', 'bear', 'bas', 'qry', 'opt'].map((tool) => ({ nhi: agent.id, tool, actions: ['*'] })),
          { nhi: agent.id, tool: 'mcp', actions: ['search_docs'] },
        ],
      }, { HDR_KEY, BEAR_KEY, BASIC_PASS, QUERY_KEY, OPT_KEY, MCP_KEY });
      iss = t.app.issuer;
      for (const tool of ['hdr', 'bear', 'bas', 'qry', 'opt']) {
        tokens.set(tool, (await clientCredentialsToken(iss, agent, `${iss}/tools/${tool}`, 'read_r head_r')).access_token);
      }
      tokens.set('mcp', (await clientCredentialsToken(iss, agent, `${iss}/tools/mcp`, 'search_docs')).access_token);
    });
    after(async () => {
      await t.app.close();
      await up.close();
    });
    beforeEach(() => {
      up.seen.length = 0;
      up.custom = undefined;
      up.mcpMode = 'json';
    });

    const auth = (tool: string) => ({ authorization: `Bearer ${tokens.get(tool)!}` });
    const get = (tool: string, what: string, headers: Record<string, string> = {}, method = 'GET') =>
      send(iss, `/tools/${tool}/r/${what}`, { method, headers: { ...auth(tool), ...headers } });

    /** Every form the secret of each tool travels in (written out here, not taken from the code under test). */
    const FORMS: Record<string, string[]> = {
      hdr: [HDR_KEY],
      bear: [BEAR_KEY, JSON.stringify(BEAR_KEY).slice(1, -1), JSON.stringify(BEAR_KEY).slice(1, -1).replace(/\//g, '\\/'), escapeHtml(BEAR_KEY)],
      bas: [BASIC_PASS, BASIC_B64],
      qry: [QUERY_KEY, encodeURIComponent(QUERY_KEY), escapeHtml(QUERY_KEY), escapeHtml(encodeURIComponent(QUERY_KEY))],
      mcp: [MCP_KEY, MCP_KEY.replace(/\//g, '\\/')],
    };

    it('a JSON body reflecting the request (header credential): the secret is filler of its length, the JSON still parses, content-length is true', async () => {
      const r = await get('hdr', 'json');
      assert.equal(r.status, 200);
      assert.ok(showsNone(r.body, FORMS.hdr!), r.body.toString());
      assert.equal(Number(r.headers['content-length']), r.body.length);
      const echoed = JSON.parse(r.body.toString('utf8'));
      assert.equal(echoed.headers['x-api-key'], '*'.repeat(HDR_KEY.length));
      // The tool did get the real credential: only its way back is scrubbed.
      assert.equal(up.seen[0]!.headers['x-api-key'], HDR_KEY);
    });

    it('with and without content-length, for every credential type: no form of the secret reaches the agent', async () => {
      for (const tool of ['hdr', 'bear', 'bas', 'qry']) {
        for (const what of ['json', 'json-chunked', 'php', 'octet']) {
          const r = await get(tool, what);
          assert.equal(r.status, 200, `${tool} ${what}`);
          assert.ok(showsNone(r.body, FORMS[tool]!), `${tool} ${what}: ${r.body.toString()}`);
          if (what === 'json-chunked') assert.equal(r.headers['transfer-encoding'], 'chunked');
          else if (what !== 'octet') assert.equal(Number(r.headers['content-length']), r.body.length, `${tool} ${what}`);
          if (what !== 'octet') JSON.parse(r.body.toString('utf8'));
        }
      }
    });

    it('an HTML error page quoting the Authorization header (bearer, basic) and the URL (query)', async () => {
      for (const tool of ['hdr', 'bear', 'bas', 'qry']) {
        const r = await get(tool, 'html');
        assert.equal(r.status, 500);
        assert.match(String(r.headers['content-type']), /^text\/html/);
        assert.ok(showsNone(r.body, FORMS[tool]!), `${tool}: ${r.body.toString()}`);
        assert.ok(r.body.toString().includes('500 Internal Server Error'), 'the page itself is intact');
      }
      const bearer = (await get('bear', 'html')).body.toString();
      assert.match(bearer, /authorization: Bearer \*+\n/);
    });

    it('basic: the base64 `user:password` and the password the tool decoded from it', async () => {
      const r = await get('bas', 'json');
      assert.ok(!r.body.includes(BASIC_B64.replace(/=+$/, '')) && !r.body.includes(BASIC_PASS), r.body.toString());
      const echoed = JSON.parse(r.body.toString('utf8'));
      assert.match(echoed.headers.authorization, /^Basic \*+=*$/);
      assert.equal(echoed.basic, `${BASIC_USER}:${'*'.repeat(BASIC_PASS.length)}`);
    });

    it('query: the percent-encoded secret in the echoed URL and the decoded one; the filler is a byte the secret does not use', async () => {
      const r = await get('qry', 'json', {}, 'GET');
      assert.ok(showsNone(r.body, [QUERY_KEY, encodeURIComponent(QUERY_KEY), new URLSearchParams({ k: QUERY_KEY }).toString().slice(2)]), r.body.toString());
      const echoed = JSON.parse(r.body.toString('utf8'));
      const filler = String(echoed.query.api_key)[0]!;
      assert.ok(!QUERY_KEY.includes(filler) && filler !== '*', `filler ${filler}`);
      assert.equal(echoed.query.api_key, filler.repeat(QUERY_KEY.length));
      assert.ok(String(echoed.url).includes(`api_key=${filler.repeat(encodeURIComponent(QUERY_KEY).length)}`), echoed.url);
      assert.ok(up.seen[0]!.url.includes(encodeURIComponent(QUERY_KEY)), 'the tool got the real credential');
    });

    it('JSON-escaped: a secret with `/`, `"` and `\\` echoed as JSON.stringify writes it and as PHP does (`\\/`)', async () => {
      for (const what of ['json', 'php']) {
        const r = await get('bear', what);
        const text = r.body.toString('utf8');
        assert.ok(showsNone(r.body, FORMS.bear!), text);
        const echoed = JSON.parse(text);
        assert.match(echoed.headers.authorization, /^Bearer \*+$/, what);
      }
    });

    it('a response typed as binary (the agent can ask for one with Accept) is scrubbed too', async () => {
      const r = await get('hdr', 'octet', { accept: 'application/octet-stream' });
      assert.equal(r.status, 200);
      assert.ok(showsNone(r.body, FORMS.hdr!), r.body.toString());
    });

    it('server-sent events: a secret split across two chunks at every position is caught, and what precedes it is sent at once', async () => {
      const key = HDR_KEY;
      const gates = Array.from({ length: key.length }, () => gate());
      up.custom = async (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (let i = 1; i < key.length; i++) {
          res.write(`data: ${i} ${key.slice(0, i)}`);
          await gates[i]!.opened;
          res.write(`${key.slice(i)} end\n\n`);
        }
        res.end();
      };
      const s = await live(iss, '/tools/hdr/r/custom', auth('hdr'));
      assert.equal(s.status, 200);
      let seenUpTo = 0;
      for (let i = 1; i < key.length; i++) {
        // The bytes before the split reach the agent while the tool still holds the rest: the
        // chunk was processed alone, and only the possible start of the secret was held back.
        await s.until((text) => text.length >= seenUpTo + `data: ${i} `.length);
        gates[i]!.open();
        const event = `data: ${i} ${'*'.repeat(key.length)} end\n\n`;
        await s.until((text) => text.length >= seenUpTo + event.length);
        assert.equal(s.text().slice(seenUpTo, seenUpTo + event.length), event, `split at ${i}`);
        seenUpTo += event.length;
      }
      await s.ended;
      assert.ok(showsNone(s.text(), FORMS.hdr!));
    });

    it('server-sent events arrive at once: an event that ends with the start of the secret is not held back (the tool sends the next only after the agent got it)', { timeout: 20_000 }, async () => {
      const next = gate();
      const prefix = HDR_KEY.slice(0, 12);
      up.custom = async (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        res.write(`id: 1\ndata: {"key":"${HDR_KEY}","partial":"${prefix}`);
        res.write(`"}\n\ndata: ${prefix}\n\n`);
        await next.opened;
        res.end(`id: 2\ndata: {"n":2}\n\n`);
      };
      const s = await live(iss, '/tools/hdr/r/custom', auth('hdr'));
      // If the proxy held back any of it, this never resolves (and the test times out).
      const first = `id: 1\ndata: {"key":"${'*'.repeat(HDR_KEY.length)}","partial":"${prefix}"}\n\ndata: ${prefix}\n\n`;
      await s.until((text) => text.length >= first.length);
      assert.equal(s.text(), first);
      next.open();
      await s.ended;
      assert.equal(s.text(), `${first}id: 2\ndata: {"n":2}\n\n`);
    });

    describe('an MCP tool', () => {
      const rpc = (id: number, method: string, params: Record<string, unknown> = {}) => JSON.stringify({ jsonrpc: '2.0', id, method, params });
      const post = (body: string) => send(iss, '/tools/mcp', {
        method: 'POST', body,
        headers: { ...auth('mcp'), 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'accept-encoding': 'gzip, br' },
      });
      const dataOf = (r: Answer, mode: 'json' | 'sse') => {
        const text = r.body.toString('utf8');
        if (mode === 'json') return JSON.parse(text);
        const line = text.split('\n').find((l) => l.startsWith('data: '));
        return JSON.parse(line!.slice(6));
      };

      for (const mode of ['json', 'sse'] as const) {
        it(`tools/list (${mode}): filtered, then scrubbed, also where the filter's re-serializing turned an escaped secret into a plain one`, async () => {
          up.mcpMode = mode;
          const r = await post(rpc(1, 'tools/list'));
          assert.equal(r.status, 200, r.body.toString());
          assert.ok(showsNone(r.body, FORMS.mcp!), r.body.toString());
          const tools = dataOf(r, mode).result.tools as Array<{ name: string; description: string; also: string }>;
          assert.deepEqual(tools.map((x) => x.name), ['search_docs'], 'still filtered to what the caller may call');
          assert.equal(tools[0]!.description, `called with Bearer ${'*'.repeat(MCP_KEY.length)}`);
          assert.equal(tools[0]!.also, '*'.repeat(MCP_KEY.length));
          assert.equal(Number(r.headers['content-length']), r.body.length);
        });

        it(`tools/call (${mode}): the answer streamed back is scrubbed`, async () => {
          up.mcpMode = mode;
          const r = await post(rpc(2, 'tools/call', { name: 'search_docs', arguments: { q: 'x' } }));
          assert.equal(r.status, 200, r.body.toString());
          assert.ok(showsNone(r.body, FORMS.mcp!), r.body.toString());
          assert.equal(dataOf(r, mode).result.content[0].text, `you sent Bearer ${'*'.repeat(MCP_KEY.length)}`);
        });
      }

      it('tools/list answered with an error status (streamed, not filtered) is scrubbed too', async () => {
        up.mcpMode = 'error';
        const r = await post(rpc(3, 'tools/list'));
        assert.equal(r.status, 500);
        assert.ok(showsNone(r.body, FORMS.mcp!), r.body.toString());
        assert.match(r.body.toString(), /authorization: Bearer \*+$/);
      });

      it('a gzip answer the server sends although asked for identity is refused (502), on the tools/list and the tools/call path', async () => {
        up.mcpMode = 'gzip';
        for (const body of [rpc(4, 'tools/list'), rpc(5, 'tools/call', { name: 'search_docs', arguments: {} })]) {
          const r = await post(body);
          assert.equal(r.status, 502, r.body.toString());
          const err = JSON.parse(r.body.toString('utf8'));
          assert.equal(err.error, 'bad_gateway');
          assert.match(err.error_description, /compressed/);
        }
        assert.ok(up.seen.every((s) => s.headers['accept-encoding'] === 'identity'), 'the agent\'s gzip, br was not passed on');
      });
    });

    it('compressed bodies: the tool is asked for identity; one that gzips anyway is refused with 502, nothing of its body passed on', async () => {
      const r = await get('hdr', 'gzip', { 'accept-encoding': 'gzip, deflate, br' });
      assert.equal(r.status, 502);
      const err = JSON.parse(r.body.toString('utf8'));
      assert.equal(err.error, 'bad_gateway');
      assert.match(err.error_description, /compressed body .* cannot check it for the tool's credential/);
      assert.equal(up.seen[0]!.headers['accept-encoding'], 'identity');
      // A HEAD answer has no body to check: its headers pass.
      const head = await get('hdr', 'gzip', {}, 'HEAD');
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-encoding'], 'gzip');
    });

    it('a text in a charset that is not ASCII-compatible (UTF-16, UTF-32, UTF-7), in which the secret has other bytes, is refused (502)', async () => {
      for (const [charset, encode] of [
        ['utf-16le', (x: string) => Buffer.from(x, 'utf16le')],
        ['UTF-16', (x: string) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(x, 'utf16le')])],
        ['"utf-32"', (x: string) => Buffer.concat([...x].map((c) => Buffer.from([c.charCodeAt(0), 0, 0, 0])))],
        ['utf-7', (x: string) => Buffer.from(x.replace(/-/g, '+AC0-'))],
      ] as const) {
        up.custom = (req, res) => {
          const body = encode(`key: ${String(req.headers['x-api-key'])}`);
          res.writeHead(200, { 'content-type': `text/plain; charset=${charset}`, 'content-length': body.length }).end(body);
        };
        const r = await get('hdr', 'custom');
        assert.equal(r.status, 502, charset);
        assert.match(JSON.parse(r.body.toString('utf8')).error_description, /character encoding/);
      }
      // An EBCDIC code page: ASCII letters are other bytes there (named charsets are allowed by list).
      up.custom = (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain; charset=IBM037' }).end(`key: ${String(req.headers['x-api-key'])}`);
      };
      const ebcdic = await get('hdr', 'custom');
      assert.equal(ebcdic.status, 502, 'IBM037');
      // UTF-16 text labelled as nothing but a byte order mark: cut off before any of it passes.
      up.custom = (req, res) => {
        const body = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`key: ${String(req.headers['x-api-key'])}`, 'utf16le')]);
        res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
      };
      const bom = await get('hdr', 'custom').catch(() => ({ status: 0, body: Buffer.alloc(0), headers: {} }));
      assert.ok(!bom.body.includes(Buffer.from(HDR_KEY, 'utf16le')), 'no UTF-16 echo of the secret reaches the agent');
      up.custom = (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain; charset=ISO-8859-1' }).end(`key: ${String(req.headers['x-api-key'])}`);
      };
      const latin1 = await get('hdr', 'custom');
      assert.equal(latin1.status, 200, 'an ASCII-compatible charset is scrubbed as usual');
      assert.equal(latin1.body.toString('latin1'), `key: ${'*'.repeat(HDR_KEY.length)}`);
    });

    it('Range is not sent upstream (an echo read a few bytes at a time would show no whole secret); the whole body comes back scrubbed', async () => {
      const r = await get('hdr', 'json', { range: 'bytes=40-60', 'if-range': '"x"' });
      assert.equal(r.status, 200);
      assert.equal(up.seen[0]!.headers.range, undefined);
      assert.equal(up.seen[0]!.headers['if-range'], undefined);
      assert.ok(showsNone(r.body, FORMS.hdr!));
    });

    it('the opt-out (`scrub_response_secrets: false`): the body passes unchanged, encoded or not, Range and Accept-Encoding as the agent sent them', async () => {
      const r = await get('opt', 'json', { range: 'bytes=0-10', 'accept-encoding': 'gzip' });
      assert.equal(r.status, 200);
      const echoed = JSON.parse(r.body.toString('utf8'));
      assert.equal(echoed.headers['x-api-key'], OPT_KEY, 'documented: an opted-out tool\'s echo reaches the agent');
      assert.equal(echoed.headers.range, 'bytes=0-10');
      assert.equal(echoed.headers['accept-encoding'], 'gzip');
      const gz = await get('opt', 'gzip', { 'accept-encoding': 'gzip' });
      assert.equal(gz.status, 200);
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.ok(gunzipSync(gz.body).includes(OPT_KEY));
    });

    it('a body without the secret passes byte for byte, with and without content-length: binary, near misses, SSE', async () => {
      const near = [
        HDR_KEY.slice(0, -1), HDR_KEY.slice(1), `${HDR_KEY.slice(0, 10)}\n${HDR_KEY.slice(10)}`, HDR_KEY.toUpperCase(),
        `${HDR_KEY.slice(0, 20)}X${HDR_KEY.slice(21)}`, HDR_KEY.slice(0, 5).repeat(10),
      ].join(' | ');
      const bodies: Array<[string, Buffer]> = [
        ['binary', randomBytes(200_000)],
        ['near misses', Buffer.from(`{"text":"${near}"}`)],
        ['server-sent events', Buffer.from(`id: 1\ndata: ${HDR_KEY.slice(0, 30)}\n\nid: 2\ndata: ${near}\n\n`)],
        ['ends with the start of the secret', Buffer.from(`tail ${HDR_KEY.slice(0, 25)}`)],
        ['empty', Buffer.alloc(0)],
      ];
      for (const [what, body] of bodies) {
        for (const framing of ['content-length', 'chunked'] as const) {
          up.custom = async (_req, res) => {
            res.writeHead(200, { 'content-type': what === 'binary' ? 'application/octet-stream' : 'text/plain', ...(framing === 'content-length' ? { 'content-length': body.length } : {}) });
            // Several writes: chunk boundaries land anywhere.
            for (let at = 0; at < body.length; at += 7_919) {
              res.write(body.subarray(at, at + 7_919));
              await new Promise((r) => setImmediate(r));
            }
            res.end();
          };
          const r = await get('hdr', 'custom');
          assert.equal(r.status, 200, `${what} ${framing}`);
          assert.ok(r.body.equals(body), `${what} (${framing}) changed`);
          if (framing === 'content-length') assert.equal(Number(r.headers['content-length']), body.length);
        }
      }
    });

    it('fast-check, through the proxy: any chunking of any body with the secret anywhere comes out as split(secret).join(filler)', async () => {
      const scrubber = new SecretScrubber({ type: 'header', name: 'X-Api-Key', value: HDR_KEY });
      assert.deepEqual(scrubber.forms.map((f) => f.toString()), [HDR_KEY], 'the plain secret has one form: the oracle is exact');
      const piece = fc.oneof(
        fc.constant(HDR_KEY),
        fc.nat({ max: HDR_KEY.length - 1 }).map((n) => HDR_KEY.slice(0, n)),
        fc.nat({ max: HDR_KEY.length - 1 }).map((n) => HDR_KEY.slice(n)),
        fc.string({ maxLength: 20 }),
        fc.constantFrom('\n\n', 'data: ', '"'),
      );
      await fc.assert(fc.asyncProperty(fc.array(piece, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 8 }), async (pieces, at) => {
        const body = Buffer.from(pieces.join(''), 'utf8');
        const chunks = cut(body, at);
        up.custom = async (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          for (const c of chunks) {
            res.write(c);
            await new Promise((r) => setImmediate(r));
          }
          res.end();
        };
        const r = await get('hdr', 'custom');
        const expected = Buffer.from(body.toString('latin1').split(HDR_KEY).join('*'.repeat(HDR_KEY.length)), 'latin1');
        assert.ok(r.body.equals(expected), `${JSON.stringify(pieces)} cut at ${JSON.stringify(at)}`);
      }), { numRuns: 40 });
    });
  });

  describe('the scrubber (scrub.ts), property-based against a one-shot oracle', () => {
    it('one form: for any chunking, the output equals body.split(secret).join(filler) of the whole body', () => {
      // A small alphabet, so that secrets overlap themselves and bodies are full of near misses.
      const secret = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 8 });
      fc.assert(fc.property(secret, fc.array(fc.oneof(fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), maxLength: 10 }), fc.constant('SECRET')), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (s, pieces, at) => {
        const scrubber = new SecretScrubber({ type: 'bearer', value: s });
        assert.deepEqual(scrubber.forms.map((f) => f.toString()), [s]);
        const body = Buffer.from(pieces.map((p) => (p === 'SECRET' ? s : p)).join(''), 'latin1');
        const expected = Buffer.from(body.toString('latin1').split(s).join('*'.repeat(s.length)), 'latin1');
        assert.ok(streamed(scrubber, cut(body, at)).equals(expected));
        assert.ok(scrubber.all(body).equals(expected));
      }), { numRuns: 2000 });
    });

    it('every form of any header-safe secret: chunking never matters, the output has the body\'s length, differs only by filler, and shows no form', () => {
      const headerSafe = fc.string({ unit: fc.oneof(fc.constantFrom('"', '\\', '/', '%', '&', '<', "'", ' ', '+', '=', '*', '#', '\t', 'é', 'a', 'b'), fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c))), minLength: 1, maxLength: 12 });
      const cred = fc.record({ type: fc.constantFrom('bearer', 'header', 'basic', 'query') as fc.Arbitrary<InjectedCredential['type']>, value: headerSafe, username: fc.constantFrom('u', 'svc') });
      fc.assert(fc.property(cred, fc.array(fc.oneof(fc.nat({ max: 40 }), fc.string({ maxLength: 8 }), fc.uint8Array({ maxLength: 8 })), { maxLength: 14 }), fc.array(fc.nat(), { maxLength: 10 }), (c, pieces, at) => {
        const credential: InjectedCredential = { type: c.type, value: c.value, ...(c.type === 'header' || c.type === 'query' ? { name: 'k' } : {}), ...(c.type === 'basic' ? { username: c.username } : {}) };
        const scrubber = new SecretScrubber(credential);
        const forms = secretForms(credential);
        // A number picks a form (or a piece of one): bodies full of whole and partial forms.
        const body = Buffer.concat(pieces.map((p) => {
          if (typeof p === 'number') {
            const f = scrubber.forms[p % scrubber.forms.length]!;
            return p % 3 === 0 ? f.subarray(0, p % f.length) : f;
          }
          return typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p);
        }));
        const whole = scrubber.all(body);
        const out = streamed(scrubber, cut(body, at));
        assert.ok(out.equals(whole), 'chunking changed the output');
        assert.ok(whole.equals(oracle(body, scrubber.forms, scrubber.filler)));
        assert.equal(out.length, body.length);
        for (let i = 0; i < out.length; i++) if (out[i] !== body[i]) assert.equal(out[i], scrubber.filler);
        assert.ok(showsNone(out, forms), `a form survived: ${JSON.stringify(c)}`);
      }), { numRuns: 1000 });
    });

    it('a secret whose forms use every printable ASCII character leaves no filler byte: refused at start, never scrubbed with a byte that could rebuild it', () => {
      const every = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('');
      assert.throws(() => new SecretScrubber({ type: 'bearer', value: every }), { code: 'ERR_CREDENTIAL_INVALID' });
      // One character fewer leaves that one as the filler.
      const scrubber = new SecretScrubber({ type: 'bearer', value: every.replace('~', '') });
      assert.equal(String.fromCharCode(scrubber.filler), '~');
    });
  });
});
