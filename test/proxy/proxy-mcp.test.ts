import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, dpopProof, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startDemoMcpTool, type DemoTool } from '../../src/demo/index.js';
import { MandateClient } from '../../src/client/index.js';
import { athFor } from '../../src/jose/index.js';

const DOCS_KEY = 'docs-upstream-secret-0123456789';

describe('tool proxy: MCP tools (Streamable HTTP)', () => {
  let t: TestApp;
  let docs: DemoTool;
  let docsSse: DemoTool;
  let alice: TestAgent;
  let bob: TestAgent;
  let key: TestDpopKey;
  let iss: string;

  before(async () => {
    docs = await startDemoMcpTool({ expectedCredential: DOCS_KEY });
    docsSse = await startDemoMcpTool({ expectedCredential: DOCS_KEY, sse: true });
    alice = await testAgent('alice');
    bob = await testAgent('bob');
    key = await testDpopKey();
    const dir = mkdtempSync(join(tmpdir(), 'mandate-policy-'));
    const policyFile = join(dir, 'mcp.cedar');
    writeFileSync(policyFile, [
      '@id("bob-reads-only")',
      'forbid (principal == Mandate::Nhi::"bob", action == Mandate::Action::"create_page", resource);',
      '@id("no-resources")',
      'forbid (principal, action == Mandate::Action::"mcp:resources/list", resource);',
    ].join('\n'));
    const actions = [
      { name: 'search_docs', tier: 'read' },
      { name: 'create_page', tier: 'write' },
      { name: 'delete_space', tier: 'destructive' },
    ];
    t = await startTestApp(undefined, {
      nhis: [agentNhi(alice), agentNhi(bob)],
      tools: [
        { id: 'docs', kind: 'mcp', upstream: docs.url, credential: { type: 'bearer', value: 'env:DOCS_KEY' }, actions },
        { id: 'docs-sse', kind: 'mcp', upstream: docsSse.url, credential: { type: 'bearer', value: 'env:DOCS_KEY' }, actions },
      ],
      grants: [
        { nhi: 'alice', tool: 'docs', actions: ['*'] },
        { nhi: 'alice', tool: 'docs-sse', actions: ['*'] },
        { nhi: 'bob', tool: 'docs', actions: ['search_docs', 'create_page'] },
      ],
      policy: { files: [policyFile] },
    }, { DOCS_KEY });
    iss = t.app.issuer;
  });
  after(async () => {
    await t.app.close();
    await docs.close();
    await docsSse.close();
  });

  /** A real MCP client whose every HTTP request goes through the Mandate SDK (token + DPoP proof). */
  async function mcpClient(who: TestAgent, tool: string, scope: string[]) {
    const mandate = new MandateClient({ issuer: iss, clientId: who.id, auth: { type: 'private_key_jwt', privateJwk: who.privateJwk } });
    const transport = new StreamableHTTPClientTransport(new URL(`${iss}/tools/${tool}`), {
      fetch: (url, init) => mandate.fetch(tool, scope, url instanceof URL ? url : String(url), init as RequestInit),
    });
    const client = new Client({ name: 'proxy-test', version: '1.0.0' });
    await client.connect(transport);
    return client;
  }

  for (const tool of ['docs', 'docs-sse']) {
    it(`lists only the tools the caller may call and calls an allowed one (${tool})`, async () => {
      const client = await mcpClient(alice, tool, ['search_docs', 'create_page']);
      try {
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((x) => x.name).sort(), ['create_page', 'search_docs'], 'delete_space is not in the token scope');
        const result = await client.callTool({ name: 'search_docs', arguments: { query: 'credentials' } });
        assert.ok(!result.isError, JSON.stringify(result));
        assert.match(JSON.stringify(result.content), /Rotating API credentials/);
      } finally {
        await client.close();
      }
    });
  }

  it('hides a tool a policy forbids from tools/list, and refuses calling it with a JSON-RPC error', async () => {
    const client = await mcpClient(bob, 'docs', ['search_docs', 'create_page']);
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((x) => x.name), ['search_docs']);
      await assert.rejects(client.callTool({ name: 'create_page', arguments: { space: 'eng', title: 'x', body: 'y' } }), (err: unknown) => {
        assert.ok(err instanceof McpError, String(err));
        assert.equal(err.code, -32001);
        assert.match(err.message, /bob-reads-only/);
        return true;
      });
    } finally {
      await client.close();
    }
  });

  it('refuses a call outside the token scope with a JSON-RPC error', async () => {
    const client = await mcpClient(alice, 'docs', ['search_docs']);
    try {
      await assert.rejects(client.callTool({ name: 'create_page', arguments: { space: 'eng', title: 'x', body: 'y' } }), (err: unknown) => {
        assert.ok(err instanceof McpError);
        assert.equal(err.code, -32001);
        return true;
      });
    } finally {
      await client.close();
    }
  });

  describe('raw JSON-RPC through the proxy', () => {
    let token: string;
    before(async () => {
      token = (await clientCredentialsToken(iss, alice, `${iss}/tools/docs`, 'search_docs create_page', key)).access_token;
    });
    const post = async (body: unknown, tool = 'docs') => {
      const url = `${iss}/tools/${tool}`;
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          authorization: `DPoP ${token}`, dpop: await dpopProof(key, 'POST', url, { ath: athFor(token) }),
          'content-type': 'application/json', accept: 'application/json, text/event-stream',
        },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
    };
    const call = (id: number, name: string, args: Record<string, unknown> = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
    /** The pages a search finds (the demo answers with its query and the results). */
    const search = async (q: string): Promise<unknown[]> => {
      const r = (await post(call(99, 'search_docs', { query: q }))).json as { result: { content: Array<{ text: string }> } };
      return (JSON.parse(r.result.content[0]!.text) as { results: unknown[] }).results;
    };

    it('refuses a whole batch that hides a denied call among allowed ones; nothing reaches the tool', async () => {
      const title = `batch-smuggled-${Date.now()}`;
      const r = await post([call(1, 'create_page', { space: 'eng', title, body: 'b' }), call(2, 'delete_space', { space: 'eng' })]);
      assert.equal(r.status, 200);
      assert.ok(Array.isArray(r.json));
      assert.equal(r.json.length, 2);
      assert.ok(r.json.every((m: { error?: { code: number } }) => m.error && m.error.code < -32000));
      assert.equal(r.json.find((m: { id: number }) => m.id === 2).error.code, -32001);
      assert.deepEqual(await search(title), [], 'the allowed call in the refused batch did not run');
      // The same call alone passes and creates the page, so the search above would have found it.
      assert.equal((await post(call(3, 'create_page', { space: 'eng', title, body: 'b' }))).status, 200);
      assert.equal((await search(title)).length, 1);
    });

    it('passes an allowed batch', async () => {
      const r = await post([call(1, 'search_docs', { query: 'deploy' }), { jsonrpc: '2.0', id: 2, method: 'ping' }]);
      assert.equal(r.status, 200, r.text);
    });

    for (const name of ['Search_docs', 'SEARCH_DOCS', 'search_docѕ', 'ｓearch_docs', 'search\u200b_docs', 'search_docs ']) {
      it(`refuses the look-alike tool name ${JSON.stringify(name)}`, async () => {
        const r = await post(call(5, name, { query: 'x' }));
        assert.equal(r.status, 200);
        assert.equal(r.json.error.code, -32001, r.text);
      });
    }

    it('refuses protocol methods a policy forbids (resources/list)', async () => {
      const r = await post({ jsonrpc: '2.0', id: 7, method: 'resources/list' });
      assert.equal(r.json.error.code, -32001);
      assert.match(r.json.error.message, /no-resources/);
    });

    it('answers malformed JSON-RPC with -32700 / -32600 and duplicate member names as invalid', async () => {
      assert.equal((await post('{not json')).json.error.code, -32700);
      assert.equal((await post('[]')).json.error.code, -32600);
      const dup = await post('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","name":"delete_space","arguments":{}}}');
      assert.ok([-32700, -32600].includes(dup.json.error.code), dup.text);
    });

    it('holds a destructive tool call for approval (a JSON-RPC error carrying approval_required)', async () => {
      // delete_space is not in any token the broker issues without approval; the broker's
      // elevation is the way in, and the proxy passes the elevation token once.
      const mandate = new MandateClient({ issuer: iss, clientId: 'alice', auth: { type: 'private_key_jwt', privateJwk: alice.privateJwk } });
      const args = { space: 'support' };
      const digest = mandate.argsDigest(args);
      const err = await mandate.getToken('docs', ['delete_space'], { argsDigest: digest }).then(() => undefined, (e: unknown) => e as { approvalId: string });
      assert.ok(err?.approvalId);
      assert.equal((await t.admin('POST', `/approvals/${err.approvalId}/approve`, {})).status, 200);
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'delete_space', arguments: args } });
      const send = () => mandate.fetch('docs', ['delete_space'], '', {
        method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body,
      }, { argsDigest: digest, approvalId: err.approvalId });
      const first = await send();
      const firstJson = (await first.json()) as { result?: unknown; error?: unknown };
      assert.ok(firstJson.result, JSON.stringify(firstJson));
      const second = (await (await send()).json()) as { error?: { code: number } };
      assert.equal(second.error?.code, -32001, 'the elevation token passes one call');
    });
  });
});
