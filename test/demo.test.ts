import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startDemoHttpTool, startDemoMcpTool, DEMO_HTTP_MAX_BODY_BYTES, type DemoTool } from '../src/demo/index.js';

const CREDENTIAL = 'demo-upstream-secret-123';
const auth = { Authorization: `Bearer ${CREDENTIAL}` };

async function json(res: Response): Promise<Record<string, unknown>> {
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return (await res.json()) as Record<string, unknown>;
}

async function withTool<T>(start: Promise<DemoTool>, fn: (tool: DemoTool) => Promise<T>): Promise<T> {
  const tool = await start;
  try {
    return await fn(tool);
  } finally {
    await tool.close();
  }
}

test('the HTTP tool answers list, create, get and delete', () =>
  withTool(startDemoHttpTool({ expectedCredential: CREDENTIAL }), async ({ url }) => {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const list = await json(await fetch(`${url}/tickets`, { headers: auth }));
    assert.equal(list.count, 2);

    const created = await fetch(`${url}/tickets`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'Printer on fire', priority: 'high' }),
    });
    assert.equal(created.status, 201);
    const ticket = await json(created);
    assert.equal(ticket.title, 'Printer on fire');
    assert.equal(ticket.status, 'open');
    assert.equal(created.headers.get('location'), `/tickets/${String(ticket.id)}`);

    const got = await fetch(`${url}/tickets/${String(ticket.id)}`, { headers: auth });
    assert.equal(got.status, 200);
    assert.deepEqual(await json(got), ticket);
    assert.equal((await json(await fetch(`${url}/tickets?status=open`, { headers: auth }))).count, 2);

    const deleted = await fetch(`${url}/tickets/${String(ticket.id)}`, { method: 'DELETE', headers: auth });
    assert.equal(deleted.status, 200);
    assert.deepEqual(await json(deleted), { id: ticket.id, deleted: true });
    const gone = await fetch(`${url}/tickets/${String(ticket.id)}`, { headers: auth });
    assert.equal(gone.status, 404);
    assert.equal((await json(gone)).error, 'not_found');
    assert.equal((await json(await fetch(`${url}/tickets`, { headers: auth }))).count, 2);
  }));

test('the HTTP tool refuses a missing or wrong credential with 401', () =>
  withTool(startDemoHttpTool({ expectedCredential: CREDENTIAL }), async ({ url }) => {
    const none = await fetch(`${url}/tickets`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="tickets"');
    assert.equal((await json(none)).error, 'unauthorized');

    for (const header of [`Bearer ${CREDENTIAL}x`, `Bearer ${CREDENTIAL.slice(0, -1)}`, `Basic ${CREDENTIAL}`, CREDENTIAL]) {
      const res = await fetch(`${url}/tickets`, { headers: { Authorization: header } });
      assert.equal(res.status, 401, header);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      await res.arrayBuffer();
    }
    // A refused create changes nothing.
    const post = await fetch(`${url}/tickets`, {
      method: 'POST',
      headers: { Authorization: 'Bearer nope', 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'sneaky' }),
    });
    assert.equal(post.status, 401);
    assert.equal((await json(await fetch(`${url}/tickets`, { headers: auth }))).count, 2);
    // The auth scheme is case-insensitive (RFC 9110 §11.1).
    assert.equal((await fetch(`${url}/tickets`, { headers: { Authorization: `bearer ${CREDENTIAL}` } })).status, 200);
  }));

test('without expectedCredential the HTTP tool is open', () =>
  withTool(startDemoHttpTool(), async ({ url }) => {
    const res = await fetch(`${url}/tickets/1`);
    assert.equal(res.status, 200);
    assert.equal((await json(res)).id, '1');
  }));

test('the HTTP tool validates bodies and routes', () =>
  withTool(startDemoHttpTool(), async ({ url }) => {
    const post = (body: string, type = 'application/json') =>
      fetch(`${url}/tickets`, { method: 'POST', headers: { 'Content-Type': type }, body });
    assert.equal((await post('{"title":"x"}', 'text/plain')).status, 415);
    assert.equal((await post('{not json')).status, 400);
    assert.equal((await post('[1]')).status, 400);
    assert.match(String((await json(await post('{"priority":"high"}'))).message), /title is required/);
    assert.match(String((await json(await post('{"title":"x","priority":"urgent"}'))).message), /priority/);

    const put = await fetch(`${url}/tickets/1`, { method: 'PUT', body: '{}' });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, HEAD, DELETE');
    assert.equal((await fetch(`${url}/users`)).status, 404);
    assert.equal((await fetch(`${url}/tickets/1/comments`)).status, 404);
  }));

/** Sends a POST through node:http, so that the 413 can be read even while the body is still being sent. */
function rawPost(url: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/tickets`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('the HTTP tool refuses a body over 64 KiB with 413, declared or chunked', () =>
  withTool(startDemoHttpTool(), async ({ url }) => {
    assert.equal(DEMO_HTTP_MAX_BODY_BYTES, 64 * 1024);
    const big = Buffer.from(JSON.stringify({ title: 'big', description: 'x'.repeat(DEMO_HTTP_MAX_BODY_BYTES) }));
    const declared = await rawPost(url, big, { 'Content-Length': String(big.length) });
    assert.equal(declared.status, 413);
    assert.equal(JSON.parse(declared.body).error, 'payload_too_large');
    const chunked = await rawPost(url, big, { 'Transfer-Encoding': 'chunked' });
    assert.equal(chunked.status, 413);
    // Just under the cap is fine.
    const ok = Buffer.from(JSON.stringify({ title: 'fits', description: 'x'.repeat(DEMO_HTTP_MAX_BODY_BYTES - 100) }));
    assert.equal((await rawPost(url, ok, {})).status, 201);
  }));

async function mcpClient(url: string, token = CREDENTIAL): Promise<Client> {
  const client = new Client({ name: 'mandate-demo-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  await client.connect(transport);
  return client;
}

function textOf(result: unknown): string {
  const content = (result as { content: Array<{ type: string; text?: string }> }).content;
  assert.ok(Array.isArray(content) && content.length > 0, 'the result has content');
  assert.equal(content[0]!.type, 'text');
  return content[0]!.text!;
}

test('a real MCP client lists the three tools and calls search_docs', () =>
  withTool(startDemoMcpTool({ expectedCredential: CREDENTIAL }), async ({ url }) => {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const client = await mcpClient(url);
    try {
      assert.equal(client.getServerVersion()?.name, 'mandate-demo-docs');
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['create_page', 'delete_space', 'search_docs']);
      const byName = new Map(tools.map((t) => [t.name, t]));
      assert.equal(byName.get('search_docs')!.annotations?.readOnlyHint, true);
      assert.equal(byName.get('delete_space')!.annotations?.destructiveHint, true);
      assert.deepEqual(byName.get('search_docs')!.inputSchema.required, ['query']);

      const found = await client.callTool({ name: 'search_docs', arguments: { query: 'credentials' } });
      assert.notEqual(found.isError, true);
      const parsed = JSON.parse(textOf(found)) as { query: string; results: Array<{ title: string; space: string }> };
      assert.equal(parsed.query, 'credentials');
      assert.deepEqual(parsed.results.map((r) => r.title), ['Rotating API credentials']);
    } finally {
      await client.close();
    }
  }));

test('the MCP tool creates pages, deletes spaces, and validates arguments', () =>
  withTool(startDemoMcpTool(), async ({ url }) => {
    const client = await mcpClient(url);
    try {
      const created = await client.callTool({ name: 'create_page', arguments: { space: 'ops', title: 'Kubernetes upgrades', body: 'Drain one node at a time.' } });
      assert.equal(JSON.parse(textOf(created)).created.space, 'ops');
      const found = JSON.parse(textOf(await client.callTool({ name: 'search_docs', arguments: { query: 'kubernetes' } })));
      assert.equal(found.results.length, 1);

      const deleted = await client.callTool({ name: 'delete_space', arguments: { space: 'ops' } });
      assert.deepEqual(JSON.parse(textOf(deleted)), { deleted: 'ops', pages: 1 });
      const again = await client.callTool({ name: 'delete_space', arguments: { space: 'ops' } });
      assert.equal(again.isError, true);
      assert.equal(JSON.parse(textOf(await client.callTool({ name: 'search_docs', arguments: { query: 'kubernetes' } }))).results.length, 0);

      // Arguments are checked against the tool's input schema.
      const bad = await client.callTool({ name: 'create_page', arguments: { space: 'Not A Space', title: 't', body: 'b' } });
      assert.equal(bad.isError, true);
    } finally {
      await client.close();
    }
  }));

test('the MCP tool refuses a wrong credential and answers only POST /mcp', () =>
  withTool(startDemoMcpTool({ expectedCredential: CREDENTIAL }), async ({ url }) => {
    await assert.rejects(mcpClient(url, 'wrong-token'), /401|nauthorized/);
    const direct = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    assert.equal(direct.status, 401);
    await direct.arrayBuffer();
    const get = await fetch(url, { headers: auth });
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    await get.arrayBuffer();
    const parseError = await fetch(url, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: '{oops' });
    assert.equal(parseError.status, 400);
    assert.equal(((await parseError.json()) as { error: { code: number } }).error.code, -32700);
    const other = await fetch(url.replace(/\/mcp$/, '/other'), { headers: auth });
    assert.equal(other.status, 404);
    await other.arrayBuffer();
  }));
