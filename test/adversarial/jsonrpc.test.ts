import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { call, json, rawHttp, startTarget, MREC_KEY, type Target } from './harness.js';
import { startRecordingUpstream } from '../helpers/upstream.js';
import { startTestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, testAgent } from '../helpers/agent.js';

/**
 * JSON-RPC and the MCP transport, as an attacker holding a valid token for an MCP tool would try
 * them: other paths below the tool (with the tool's credential attached on the way out), the
 * transport's GET and DELETE without a usable action, notifications that carry what a request
 * would be refused for, and bodies that two JSON readers could read differently.
 */
describe('adversarial: JSON-RPC and the MCP transport', () => {
  let x: Target;
  let alice: string;
  let bob: string;
  before(async () => {
    x = await startTarget();
    alice = await x.token(x.alice, 'mrec', 'search_docs');
    bob = await x.token(x.bob, 'mrec', 'search_docs');
  });
  after(async () => x.close());
  beforeEach(() => {
    x.mrec.seen.length = 0;
  });

  const rpc = (id: number | undefined, method: string, params: Record<string, unknown> = {}) =>
    JSON.stringify({ jsonrpc: '2.0', ...(id === undefined ? {} : { id }), method, params });
  const post = (token: string, body: string, path = '/tools/mrec') => call(x.iss, path, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body,
  });

  describe('one endpoint: nothing below the MCP tool is forwarded', () => {
    it('the endpoint itself reaches the server exactly at its configured path, with the credential', async () => {
      for (const path of ['/tools/mrec', '/tools/mrec/']) {
        const r = await post(alice, rpc(1, 'ping'), path);
        assert.equal(r.status, 200, r.body);
      }
      assert.deepEqual(x.mrec.seen.map((s) => s.url), ['/mcp', '/mcp']);
      assert.equal(x.mrec.seen[0]!.headers.authorization, `Bearer ${MREC_KEY}`);
    });

    const paths = [
      '/tools/mrec/anything', '/tools/mrec/mcp', '/tools/mrec/mcp/../admin', '/tools/mrec//', '/tools/mrec/./', '/tools/mrec/%2e',
      '/tools/mrec/%2e%2e/%2e%2e/metrics', '/tools/mrec/..%2fsecret', '/tools/mrec/;x', '/tools/mrec/%00', '/tools/mrec?x=1', '/tools/mrec/?sessionId=1',
      '/tools/mrec?', '/tools/mrec/#frag',
    ];
    for (const method of ['POST', 'GET', 'DELETE', 'PUT']) {
      it(`${method} on any other path or with a query is refused and never reaches the server`, async () => {
        for (const path of paths) {
          const r = await rawHttp(x.iss, [
            `${method} ${path} HTTP/1.1`, `Host: ${new URL(x.iss).host}`, `Authorization: Bearer ${alice}`,
            'Content-Type: application/json', 'Accept: application/json, text/event-stream', `Content-Length: ${Buffer.byteLength(rpc(1, 'ping'))}`,
          ].join('\n'), rpc(1, 'ping'));
          assert.ok(r.status === 404 || r.status === 400 || (method === 'PUT' && r.status === 405), `${method} ${path}: ${r.status} ${r.body}`);
        }
        assert.deepEqual(x.mrec.seen, [], 'nothing reached the MCP server');
      });
    }

    it('the refusal is audited with who tried', async () => {
      await post(alice, rpc(1, 'ping'), '/tools/mrec/elsewhere');
      await x.t.app.audit.flush();
      const rows = await x.t.app.store.queryAudit({ type: 'tool.call_denied', limit: 5 });
      assert.ok(rows.some((r) => r.actor === 'alice' && r.data.path === '/elsewhere'), JSON.stringify(rows.map((r) => r.data)));
    });
  });

  describe('GET (the event stream) and DELETE (ending a session) are actions', () => {
    it('with a usable action in the token, they reach the server as mcp:stream and mcp:session/delete', async () => {
      const g = await call(x.iss, '/tools/mrec', { method: 'GET', headers: { authorization: `Bearer ${alice}`, accept: 'text/event-stream' } });
      const d = await call(x.iss, '/tools/mrec', { method: 'DELETE', headers: { authorization: `Bearer ${alice}`, 'mcp-session-id': 's1' } });
      assert.equal(g.status, 200, g.body);
      assert.equal(d.status, 200, d.body);
      assert.deepEqual(x.mrec.seen.map((s) => s.method), ['GET', 'DELETE']);
      await x.t.app.audit.flush();
      const rows = await x.t.app.store.queryAudit({ type: 'tool.called', limit: 10 });
      const actions = rows.map((r) => r.data.action);
      assert.ok(actions.includes('mcp:stream') && actions.includes('mcp:session/delete'), JSON.stringify(actions));
    });

    it('a token that holds no action of the tool gets neither (insufficient_scope), and nothing is forwarded', async () => {
      const now = Math.floor(Date.now() / 1000);
      // The broker never issues such a token; one signed with its key stands for a bug elsewhere.
      const empty = await x.t.app.keys.sign({
        iss: x.iss, sub: 'alice', aud: `${x.iss}/tools/mrec`, exp: now + 60, iat: now, jti: `jti-${now}-empty`, client_id: 'alice', scope: 'not_an_action',
        mandate_tier: 'read',
      }, { typ: 'at+jwt' });
      for (const method of ['GET', 'DELETE']) {
        const r = await call(x.iss, '/tools/mrec', { method, headers: { authorization: `Bearer ${empty}` } });
        assert.equal(r.status, 403, `${method}: ${r.body}`);
        assert.equal(json(r).error, 'insufficient_scope');
        assert.match(String(r.headers['www-authenticate']), /error="insufficient_scope"/);
      }
      assert.deepEqual(x.mrec.seen, []);
    });

    it('a step-down that leaves the token no usable action refuses them too', async () => {
      const writer = await x.token(x.alice, 'mrec', 'create_page');
      const sig = await x.t.admin('POST', '/signals', { nhi: 'alice', action: 'step_down', reason: 'adversarial' });
      assert.equal(sig.status, 201, JSON.stringify(sig.body));
      try {
        const r = await call(x.iss, '/tools/mrec', { method: 'GET', headers: { authorization: `Bearer ${writer}` } });
        assert.equal(r.status, 403, r.body);
        assert.match(json(r).error_description, /stepped down/);
        assert.deepEqual(x.mrec.seen, []);
      } finally {
        const lifted = await x.t.admin('POST', '/restrictions/alice/lift', {});
        assert.equal(lifted.status, 200, JSON.stringify(lifted.body));
      }
    });

    it('Cedar decides them as their own actions', async () => {
      const y = await startTarget({
        policy: [
          '@id("no-streams") forbid (principal == Mandate::Nhi::"bob", action == Mandate::Action::"mcp:stream", resource);',
          '@id("no-ending") forbid (principal == Mandate::Nhi::"bob", action == Mandate::Action::"mcp:session/delete", resource);',
        ],
      });
      try {
        const tok = await y.token(y.bob, 'mrec', 'search_docs');
        for (const [method, policy] of [['GET', 'no-streams'], ['DELETE', 'no-ending']] as const) {
          const r = await call(y.iss, '/tools/mrec', { method, headers: { authorization: `Bearer ${tok}` } });
          assert.equal(r.status, 403, r.body);
          assert.match(json(r).error_description, new RegExp(policy));
        }
        assert.deepEqual(y.mrec.seen, []);
        const ok = await call(y.iss, '/tools/mrec', { method: 'GET', headers: { authorization: `Bearer ${await y.token(y.alice, 'mrec', 'search_docs')}` } });
        assert.equal(ok.status, 200);
      } finally {
        await y.close();
      }
    });
  });

  describe('notifications are decided as requests are', () => {
    it('a tools/call without an id is checked like the request: out of scope, it never reaches the server', async () => {
      const r = await post(bob, rpc(undefined, 'tools/call', { name: 'delete_space', arguments: { space: 'eng' } }));
      assert.equal(r.status, 403, r.body);
      assert.equal(json(r).error.code, -32001);
      assert.equal(json(r).id, null);
      assert.deepEqual(x.mrec.seen, []);
    });

    it('a tools/call notification held for approval is held, not forwarded', async () => {
      const writer = await x.token(x.alice, 'mrec', 'create_page');
      const r = await post(writer, rpc(undefined, 'tools/call', { name: 'create_page', arguments: { space: 'eng', title: 't', body: 'b' } }));
      assert.equal(r.status, 403, r.body);
      assert.equal(json(r).error.code, -32002);
      assert.deepEqual(x.mrec.seen, []);
    });

    it('an undeclared tool or an unknown method as a notification is refused', async () => {
      for (const body of [
        rpc(undefined, 'tools/call', { name: 'not_declared', arguments: {} }),
        rpc(undefined, 'admin/shutdown'),
        rpc(undefined, 'tools/list'.toUpperCase()),
        rpc(undefined, 'notification/initialized'),
      ]) {
        const r = await post(alice, body);
        assert.equal(r.status, 403, `${body}: ${r.body}`);
      }
      assert.deepEqual(x.mrec.seen, []);
    });

    it('a notification a policy forbids is refused', async () => {
      const y = await startTarget({ policy: ['@id("no-resources") forbid (principal, action == Mandate::Action::"mcp:resources/read", resource);'] });
      try {
        const r2 = await call(y.iss, '/tools/mrec', {
          method: 'POST', headers: { authorization: `Bearer ${await y.token(y.alice, 'mrec', 'search_docs')}`, 'content-type': 'application/json' },
          body: rpc(undefined, 'resources/read', { uri: 'file:///etc/passwd' }),
        });
        assert.equal(r2.status, 403, r2.body);
        assert.match(json(r2).error.message, /no-resources/);
        assert.deepEqual(y.mrec.seen, []);
      } finally {
        await y.close();
      }
    });

    it('the client notifications of the protocol pass (notifications/*)', async () => {
      for (const m of ['notifications/initialized', 'notifications/cancelled', 'notifications/progress', 'notifications/roots/list_changed']) {
        const r = await post(bob, rpc(undefined, m, m === 'notifications/cancelled' ? { requestId: 1 } : {}));
        assert.equal(r.status, 200, `${m}: forwarded, the server's answer: ${r.body}`);
      }
      assert.deepEqual(x.mrec.seen.map((s) => JSON.parse(s.body).method), ['notifications/initialized', 'notifications/cancelled', 'notifications/progress', 'notifications/roots/list_changed']);
    });

    it('one refused notification in a batch refuses the whole batch', async () => {
      const body = `[${rpc(1, 'ping')},${rpc(undefined, 'tools/call', { name: 'delete_space', arguments: { space: 'eng' } })}]`;
      const r = await post(bob, body);
      assert.equal(r.status, 200, r.body);
      const replies = json(r) as Array<{ id: number; error?: { code: number } }>;
      assert.equal(replies.length, 1);
      assert.equal(replies[0]!.error?.code, -32003, 'the ping is refused with the batch');
      assert.deepEqual(x.mrec.seen, []);
    });
  });

  describe('bodies two readers could read differently', () => {
    const cases: Array<[string, string]> = [
      ['duplicate method', '{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"delete_space","arguments":{}}}'],
      ['duplicate name in params', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","name":"delete_space","arguments":{}}}'],
      ['escaped duplicate', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","n\\u0061me":"delete_space","arguments":{}}}'],
      ['request and response at once', '{"jsonrpc":"2.0","id":1,"method":"tools/call","result":{},"params":{"name":"delete_space"}}'],
      ['wrong version', '{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"delete_space"}}'],
      ['method not a string', '{"jsonrpc":"2.0","id":1,"method":["tools/call"],"params":{"name":"delete_space"}}'],
      ['params as a string', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"delete_space"}'],
      ['trailing garbage', '{"jsonrpc":"2.0","id":1,"method":"ping"} {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_space"}}'],
      ['empty batch', '[]'],
    ];
    for (const [name, body] of cases) {
      it(`${name}: refused, nothing forwarded`, async () => {
        const r = await post(bob, body);
        assert.ok(r.status === 400 || r.status === 403 || (r.status === 200 && json(r)?.error), `${r.status} ${r.body}`);
        assert.deepEqual(x.mrec.seen, []);
      });
    }

    it('a name that only looks like a granted tool is another tool', async () => {
      for (const name of ['search_docs ', 'Search_docs', 'search\u200bdocs', 'sеarch_docs' /* Cyrillic е */, 'search_docs\u0000']) {
        const r = await post(bob, rpc(1, 'tools/call', { name, arguments: {} }));
        assert.equal(json(r)?.error?.code, -32001, `${JSON.stringify(name)}: ${r.body}`);
      }
      assert.deepEqual(x.mrec.seen, []);
    });

    it('only application/json is read as JSON-RPC', async () => {
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json-seq', 'multipart/form-data; boundary=x']) {
        const r = await call(x.iss, '/tools/mrec', { method: 'POST', headers: { authorization: `Bearer ${bob}`, 'content-type': type }, body: rpc(1, 'ping') });
        assert.equal(r.status, 415, `${type}: ${r.status}`);
      }
      assert.deepEqual(x.mrec.seen, []);
    });
  });
});

describe('adversarial: an MCP event stream outlives the access it was opened with', () => {
  it('a revocation or a kill cuts an open stream off; the outcome says so', async () => {
    const up = await startRecordingUpstream();
    const alice = await testAgent('alice');
    const t = await startTestApp(undefined, {
      nhis: [agentNhi(alice)],
      tools: [{ id: 'stream', kind: 'mcp', upstream: `${up.url}/forever`, actions: [{ name: 'search_docs', tier: 'read' }] }],
      grants: [{ nhi: 'alice', tool: 'stream', actions: ['*'] }],
      tokens: { profiles: [{ name: 'read', ttl: '10m', binding: 'optional' }] },
    });
    try {
      const iss = t.app.issuer;
      const open = async () => {
        const tok = (await clientCredentialsToken(iss, alice, `${iss}/tools/stream`, 'search_docs')).access_token;
        const res = await fetch(`${iss}/tools/stream`, { headers: { authorization: `Bearer ${tok}`, accept: 'text/event-stream' } });
        assert.equal(res.status, 200);
        const reader = res.body!.getReader();
        assert.ok(!(await reader.read()).done, 'events flow');
        /** Reads until the stream ends (true) or 5 s pass (false). */
        const ends = async () => {
          const deadline = Date.now() + 5_000;
          try {
            for (;;) {
              const r = await Promise.race([reader.read(), new Promise<'wait'>((ok) => setTimeout(() => ok('wait'), Math.max(1, deadline - Date.now())))]);
              if (r === 'wait') return false;
              if (r.done) return true;
            }
          } catch {
            return true; // cut off: the connection was reset
          }
        };
        return { tok, ends };
      };

      const one = await open();
      const jti = JSON.parse(Buffer.from(one.tok.split('.')[1]!, 'base64url').toString()).jti as string;
      assert.equal((await t.admin('POST', '/revocations', { jti, reason: 'stolen' })).status, 201);
      assert.equal(await one.ends(), true, 'the stream ends once its token is revoked');
      await up.foreverClosed(1);

      const two = await open();
      const kill = await t.admin('POST', '/kill', { scope: 'nhi', target: 'alice', reason: 'drill' });
      assert.equal(kill.status, 201);
      assert.equal(await two.ends(), true, 'the stream ends once its NHI is killed');
      await up.foreverClosed(2);

      await t.app.audit.flush();
      const rows = await t.app.store.queryAudit({ type: 'tool.called', tool: 'stream', limit: 10 });
      assert.equal(rows.filter((r) => /^access revoked/.test(String(r.data.cut_off))).length, 2, JSON.stringify(rows.map((r) => r.data)));
    } finally {
      await t.app.close();
      await up.close();
    }
  });
});
