import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { agentNhi, clientCredentialsToken, dpopProof, testAgent, testDpopKey, type TestAgent, type TestDpopKey } from '../helpers/agent.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { startDemoHttpTool, type DemoTool } from '../../src/demo/index.js';
import { MandateClient, ApprovalRequiredError } from '../../src/client/index.js';
import { argsDigest } from '../../src/core/index.js';
/** A raw HTTP request, so that headers can be repeated and paths sent byte for byte. */
import { call as raw } from '../adversarial/harness.js';

const REC_KEY = 'rec-upstream-secret-0123456789';
const TICKETS_KEY = 'tickets-upstream-secret-abcdef';

describe('tool proxy: HTTP tools', () => {
  let t: TestApp;
  let rec: RecordingUpstream;
  let tickets: DemoTool;
  let alice: TestAgent;
  let bob: TestAgent;
  let key: TestDpopKey;
  let iss: string;
  const res = (tool: string) => `${iss}/tools/${tool}`;

  before(async () => {
    rec = await startRecordingUpstream({ bigBytes: 8192, credentialHeader: 'x-api-key' });
    tickets = await startDemoHttpTool({ expectedCredential: TICKETS_KEY });
    alice = await testAgent('alice');
    bob = await testAgent('bob');
    key = await testDpopKey();
    const dir = mkdtempSync(join(tmpdir(), 'mandate-policy-'));
    const policyFile = join(dir, 'proxy.cedar');
    writeFileSync(policyFile, [
      '@id("hold-high-priority")',
      '@approval("required")',
      'forbid (principal, action == Mandate::Action::"create_item", resource)',
      '  when { context.args has query && context.args.query has priority && context.args.query.priority == "high" }',
      '  unless { context.approved };',
      '@id("bob-no-deletes-in-prod")',
      'forbid (principal == Mandate::Nhi::"bob", action == Mandate::Action::"get_item", resource)',
      '  when { context.args has params && context.args.params has id && context.args.params.id == "secret" };',
    ].join('\n'));
    t = await startTestApp(undefined, {
      tokens: {
        profiles: [
          { name: 'read', ttl: '10m', binding: 'optional' },
          { name: 'write', ttl: '5m' },
          { name: 'destructive', ttl: '2m', approval: true },
        ],
      },
      nhis: [agentNhi(alice), agentNhi(bob)],
      tools: [
        {
          id: 'rec', kind: 'http', upstream: `${rec.url}/api`, credential: { type: 'header', name: 'X-Api-Key', value: 'env:REC_KEY' },
          max_body_bytes: 1024, max_response_bytes: 4096,
          actions: [
            { name: 'list_items', method: 'GET', path: '/items', tier: 'read' },
            { name: 'get_item', method: 'GET', path: '/items/{id}', tier: 'read' },
            { name: 'create_item', method: 'POST', path: '/items', tier: 'write' },
            { name: 'delete_item', method: 'DELETE', path: '/items/{id}', tier: 'destructive' },
            { name: 'big', method: 'GET', path: '/big', tier: 'read' },
            { name: 'big_chunked', method: 'GET', path: '/big-chunked', tier: 'read' },
            { name: 'events', method: 'GET', path: '/events', tier: 'read' },
            { name: 'echo_credential', method: 'GET', path: '/echo-credential', tier: 'read' },
          ],
        },
        {
          id: 'slow', kind: 'http', upstream: rec.url, timeout: 1,
          actions: [{ name: 'hang', method: 'GET', path: '/hang', tier: 'read' }, { name: 'forever', method: 'GET', path: '/forever', tier: 'read' }],
        },
        {
          id: 'limited', kind: 'http', upstream: rec.url, rate_limit: { per_second: 0.5, burst: 2 },
          actions: [{ name: 'ping', method: 'GET', path: '/ping', tier: 'read' }],
        },
        {
          id: 'queried', kind: 'http', upstream: rec.url, credential: { type: 'query', name: 'api_key', value: 'env:REC_KEY' },
          actions: [{ name: 'search', method: 'GET', path: '/search', tier: 'read' }],
        },
        {
          id: 'hosted', kind: 'http', upstream: rec.url, hosts: ['rec.tools.test'],
          actions: [{ name: 'ping', method: 'GET', path: '/ping', tier: 'read' }],
        },
        {
          id: 'tickets', kind: 'http', upstream: tickets.url, credential: { type: 'bearer', value: 'env:TICKETS_KEY' },
          actions: [
            { name: 'list_tickets', method: 'GET', path: '/tickets', tier: 'read' },
            { name: 'create_ticket', method: 'POST', path: '/tickets', tier: 'write' },
            { name: 'delete_ticket', method: 'DELETE', path: '/tickets/{id}', tier: 'destructive' },
          ],
        },
      ],
      grants: [
        { nhi: 'alice', tool: 'rec', actions: ['*'] },
        { nhi: 'alice', tool: 'limited', actions: ['ping'] },
        { nhi: 'alice', tool: 'slow', actions: ['*'] },
        { nhi: 'alice', tool: 'queried', actions: ['search'] },
        { nhi: 'alice', tool: 'hosted', actions: ['ping'] },
        { nhi: 'alice', tool: 'tickets', actions: ['*'] },
        { nhi: 'bob', tool: 'rec', actions: ['get_item'] },
      ],
      policy: { files: [policyFile] },
    }, { REC_KEY, TICKETS_KEY });
    iss = t.app.issuer;
  });
  after(async () => {
    await t.app.close();
    await rec.close();
    await tickets.close();
  });

  /** A bearer token (read tier: binding optional) for the given actions of a tool. */
  const bearer = async (tool: string, scope: string, who = alice) => (await clientCredentialsToken(iss, who, res(tool), scope)).access_token;
  /** A DPoP-bound token and a function that signs proofs for it. */
  const dpopToken = async (tool: string, scope: string, who = alice) => (await clientCredentialsToken(iss, who, res(tool), scope, key)).access_token;
  const dpopHeaders = async (token: string, method: string, url: string, extra: Record<string, unknown> = {}) => ({
    authorization: `DPoP ${token}`,
    dpop: await dpopProof(key, method, url, { ath: (await import('../../src/jose/index.js')).athFor(token), ...extra }),
  });

  it('forwards a declared call with the tool credential in place of the agent token (RFC 6750 §2.1 bearer)', async () => {
    const token = await bearer('rec', 'get_item');
    const before = rec.seen.length;
    const r = await raw(t.url, '/tools/rec/items/42?x=1', { headers: { authorization: `Bearer ${token}`, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', cookie: 'session=agent', 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { ok: true, method: 'GET', path: '/api/items/42' });
    assert.equal(rec.seen.length, before + 1);
    const up = rec.seen.at(-1)!;
    assert.equal(up.url, '/api/items/42?x=1');
    assert.equal(up.headers['x-api-key'], REC_KEY, 'the real credential is injected');
    assert.equal(up.headers.authorization, undefined, "the agent's token never reaches the tool");
    assert.equal(up.headers.cookie, undefined);
    assert.equal(up.headers['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the proxy\'s view, not the client\'s claim');
    assert.match(String(up.headers.traceparent), /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    assert.ok(!r.body.includes(REC_KEY));
  });

  it('starts a time-ordered trace for a call without traceparent: the same id upstream (flags 00), and in the audit', async () => {
    const token = await bearer('rec', 'get_item');
    const t0 = Date.now();
    const r = await raw(t.url, '/tools/rec/items/43', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, r.body);
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-00$/.exec(String(rec.seen.at(-1)!.headers.traceparent));
    assert.ok(m, String(rec.seen.at(-1)!.headers.traceparent));
    const traceId = m[1]!;
    const ms = parseInt(traceId.slice(0, 12), 16);
    assert.ok(ms >= t0 - 1000 && ms <= Date.now() + 1000, `the first 12 hex digits are the time in ms (${ms})`);
    await new Promise((res) => setTimeout(res, 50));
    const audit = await t.admin('GET', `/audit?trace_id=${traceId}`);
    const called = (audit.body.records as Array<Record<string, any>>).find((x) => x.type === 'tool.called');
    assert.ok(called, JSON.stringify(audit.body));
    assert.equal(called.data.args_digest, argsDigest({ params: { id: '43' }, query: {} }));
  });

  it('binds each call to its own arguments when the same paths and queries come again (the digest is remembered per path)', async () => {
    const token = await bearer('rec', 'get_item');
    const calls: Array<[string, Record<string, unknown>]> = [
      ['/items/44', { params: { id: '44' }, query: {} }],
      ['/items/44?b=2&a=1', { params: { id: '44' }, query: { b: '2', a: '1' } }],
      ['/items/45', { params: { id: '45' }, query: {} }],
      ['/items/44', { params: { id: '44' }, query: {} }],
      ['/items/44?a=1&c=3', { params: { id: '44' }, query: { a: '1', c: '3' } }],
      ['/items/%34%34', { params: { id: '44' }, query: {} }],
      ['/items/44?b=2&a=1', { params: { id: '44' }, query: { b: '2', a: '1' } }],
    ];
    const traces: string[] = [];
    for (const [i, [path]] of calls.entries()) {
      const traceId = `${'c0ffee'.padEnd(26, '0')}${String(i).padStart(6, '0')}`;
      traces.push(traceId);
      const r = await raw(t.url, `/tools/rec${path}`, { headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-b7ad6b7169203331-01` } });
      assert.equal(r.status, 200, r.body);
    }
    await new Promise((res) => setTimeout(res, 80));
    for (const [i, [path, args]] of calls.entries()) {
      const audit = await t.admin('GET', `/audit?trace_id=${traces[i]}`);
      const called = (audit.body.records as Array<Record<string, any>>).find((x) => x.type === 'tool.called');
      assert.ok(called, JSON.stringify(audit.body));
      assert.equal(called.data.args_digest, argsDigest(args), path);
    }
  });

  it('never returns the injected credential or hop-by-hop headers to the agent', async () => {
    const token = await bearer('rec', 'echo_credential');
    const r = await raw(t.url, '/tools/rec/echo-credential', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-api-key'], undefined);
    assert.equal(r.headers['x-secret-hop'], undefined);
    assert.ok(!JSON.stringify(r.headers).includes(REC_KEY));
  });

  it('injects a query credential, replacing one the agent sent', async () => {
    const token = await bearer('queried', 'search');
    const r = await raw(t.url, '/tools/queried/search?q=a&api_key=agent-chosen', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, r.body);
    const up = new URL(rec.seen.at(-1)!.url, 'http://x');
    assert.deepEqual(up.searchParams.getAll('api_key'), [REC_KEY]);
    assert.equal(up.searchParams.get('q'), 'a');
  });

  it('works end to end with the agent SDK (DPoP, RFC 9449 §7) against a real tool', async () => {
    const client = new MandateClient({ issuer: iss, clientId: 'alice', auth: { type: 'private_key_jwt', privateJwk: alice.privateJwk } });
    const list = await client.fetch('tickets', ['list_tickets'], '/tickets');
    assert.equal(list.status, 200);
    const body = (await list.json()) as { count: number };
    assert.ok(body.count >= 1);
    const created = await client.fetch('tickets', ['create_ticket'], '/tickets', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title: 'from the proxy test' }),
    });
    assert.equal(created.status, 201);
  });

  it('answers 401 with a resource_metadata challenge when no token is sent (RFC 6750 §3, RFC 9728 §5.1)', async () => {
    const r = await raw(t.url, '/tools/rec/items');
    assert.equal(r.status, 401);
    const www = String(r.headers['www-authenticate']);
    assert.match(www, /^Bearer realm="mandate", resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/tools\/rec"/);
    assert.match(www, /DPoP algs="[^"]*ES256/);
  });

  it('serves RFC 9728 protected resource metadata per tool', async () => {
    const r = await fetch(`${t.url}/.well-known/oauth-protected-resource/tools/rec`);
    assert.equal(r.status, 200);
    const m = (await r.json()) as Record<string, unknown>;
    assert.equal(m.resource, `${iss}/tools/rec`);
    assert.deepEqual(m.authorization_servers, [iss]);
    assert.ok((m.scopes_supported as string[]).includes('get_item'));
    assert.equal((await fetch(`${t.url}/.well-known/oauth-protected-resource/tools/nope`)).status, 404);
  });

  it('refuses a token issued for tool A at tool B (aud, RFC 9068 §4)', async () => {
    const token = await bearer('tickets', 'list_tickets');
    const before = rec.seen.length;
    const r = await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/);
    // The cached verification of the same token must not change the answer.
    const again = await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(again.status, 401);
    assert.equal(rec.seen.length, before);
  });

  it('refuses a forged or malformed token', async () => {
    const token = await bearer('rec', 'list_items');
    const [h, p] = token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), scope: 'delete_item' })).toString('base64url')}.${token.split('.')[2]}`;
    for (const bad of [forged, 'not-a-jwt', `${token}x`]) {
      const r = await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${bad}` } });
      assert.equal(r.status, 401, bad.slice(0, 20));
    }
  });

  it('denies a request that matches no declared action, and one outside the token scope (RFC 6750 §3.1 insufficient_scope)', async () => {
    const token = await bearer('rec', 'list_items');
    const before = rec.seen.length;
    const undeclared = await raw(t.url, '/tools/rec/admin/users', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(undeclared.status, 403);
    assert.equal(JSON.parse(undeclared.body).error, 'access_denied');
    const wrongMethod = await raw(t.url, '/tools/rec/items', { method: 'PUT', headers: { authorization: `Bearer ${token}` } });
    assert.equal(wrongMethod.status, 403);
    const outOfScope = await raw(t.url, '/tools/rec/items/1', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(outOfScope.status, 403);
    assert.match(String(outOfScope.headers['www-authenticate']), /error="insufficient_scope", .*scope="get_item"/);
    assert.equal(rec.seen.length, before, 'nothing reached the tool');
  });

  describe('bypass attempts, each denied and none reaching the tool', () => {
    const paths = [
      '/tools/rec/items/%2e%2e/admin', '/tools/rec/items/%2E%2e/%2e%2E/admin', '/tools/rec/items/..%2fadmin', '/tools/rec/items%2f42',
      '/tools/rec/items/%252e%252e/admin', '/tools/rec/items/%252f', '/tools/rec//items/../../admin', '/tools/rec/items\\..\\admin',
      '/tools/rec/items/%5c..%5cadmin', '/tools/rec/ITEMS', '/tools/rec/Items/42', '/tools/rec/items/42/../../../../etc/passwd',
      '/tools/rec/items/%00', '/tools/rec/items/%c0%ae%c0%ae/admin', '/tools/REC/items', '/tools/r%65c/items', '/tools//rec/items',
      '/tools/rec/items/42/', '/tools/rec/items/42/delete',
    ];
    for (const p of paths) {
      it(`denies ${p}`, async () => {
        const token = await bearer('rec', 'list_items get_item');
        const before = rec.seen.length;
        const r = await raw(t.url, p, { headers: { authorization: `Bearer ${token}` } });
        assert.ok([400, 403, 404].includes(r.status), `${p} → ${r.status} ${r.body}`);
        assert.equal(rec.seen.length, before, `${p} reached the tool`);
      });
    }

    it('normalizes harmless encodings to the declared action (%41-style unreserved, dot segments inside the tool)', async () => {
      const token = await bearer('rec', 'get_item');
      const r = await raw(t.url, '/tools/rec/items/./%34%32', { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200, r.body);
      assert.equal(rec.seen.at(-1)!.url, '/api/items/42', 'the tool receives the normalized path that was authorized');
    });

    for (const h of ['x-http-method-override', 'x-http-method', 'x-method-override']) {
      it(`refuses the method-override header ${h}`, async () => {
        const token = await bearer('rec', 'get_item');
        const before = rec.seen.length;
        const r = await raw(t.url, '/tools/rec/items/1', { headers: { authorization: `Bearer ${token}`, [h]: 'DELETE' } });
        assert.equal(r.status, 400);
        assert.equal(rec.seen.length, before);
      });
    }
    it('refuses a _method query parameter', async () => {
      const token = await bearer('rec', 'get_item');
      const r = await raw(t.url, '/tools/rec/items/1?_method=DELETE', { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 400);
    });

    it('refuses two Authorization headers (Node would keep only the first)', async () => {
      const good = await bearer('rec', 'get_item');
      const r = await raw(t.url, '/tools/rec/items/1', { headers: { authorization: [`Bearer ${good}`, 'Bearer other'] } });
      assert.equal(r.status, 400);
    });

    it('refuses two DPoP headers (RFC 9449 §4.3 item 1)', async () => {
      const token = await dpopToken('rec', 'create_item');
      const url = `${iss}/tools/rec/items`;
      const h = await dpopHeaders(token, 'POST', url);
      const r = await raw(t.url, '/tools/rec/items', { method: 'POST', headers: { ...h, dpop: [h.dpop, h.dpop], 'content-type': 'application/json' }, body: '{}' });
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/);
    });

    it('refuses a body over the tool cap with 413, declared or streamed', async () => {
      const token = await dpopToken('rec', 'create_item');
      const url = `${iss}/tools/rec/items`;
      const before = rec.seen.length;
      const r = await raw(t.url, '/tools/rec/items', { method: 'POST', headers: { ...(await dpopHeaders(token, 'POST', url)), 'content-type': 'application/json' }, body: JSON.stringify({ x: 'a'.repeat(2000) }) });
      assert.equal(r.status, 413);
      assert.equal(rec.seen.length, before);
      const chunked = await raw(t.url, '/tools/rec/items', {
        method: 'POST', headers: { ...(await dpopHeaders(token, 'POST', url)), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, body: JSON.stringify({ x: 'b'.repeat(5000) }),
      }).catch(() => ({ status: 0, body: '' }));
      assert.notEqual(chunked.status, 200);
      assert.ok(!rec.seen.slice(before).some((s) => s.body.length > 1024), 'the tool never received more than the cap');
    });
  });

  describe('DPoP at the proxy (RFC 9449 §7, §4.3, §11.1)', () => {
    it('accepts a proof for this method and URL, with ath and the bound key', async () => {
      const token = await dpopToken('rec', 'create_item');
      const url = `${iss}/tools/rec/items`;
      const r = await raw(t.url, '/tools/rec/items', { method: 'POST', headers: { ...(await dpopHeaders(token, 'POST', url)), 'content-type': 'application/json' }, body: '{"a":1}' });
      assert.equal(r.status, 200, r.body);
      assert.equal(rec.seen.at(-1)!.body, '{"a":1}');
    });
    it('refuses a DPoP-bound token sent with the Bearer scheme (§7.1)', async () => {
      const token = await dpopToken('rec', 'create_item');
      const r = await raw(t.url, '/tools/rec/items', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{}' });
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate']), /^DPoP error="invalid_token"/);
    });
    it('refuses a proof for another URL, another method, without ath, or from another key (§4.3 items 9, 10, 12)', async () => {
      const token = await dpopToken('rec', 'create_item');
      const url = `${iss}/tools/rec/items`;
      const other = await testDpopKey();
      const { athFor } = await import('../../src/jose/index.js');
      const cases: Array<[string, string]> = [
        ['other url', await dpopProof(key, 'POST', `${iss}/tools/tickets/tickets`, { ath: athFor(token) })],
        ['other method', await dpopProof(key, 'GET', url, { ath: athFor(token) })],
        ['no ath', await dpopProof(key, 'POST', url)],
        ['other key', await dpopProof(other, 'POST', url, { ath: athFor(token) })],
        ['old', await dpopProof(key, 'POST', url, { ath: athFor(token), iat: Math.floor(Date.now() / 1000) - 3600 })],
      ];
      for (const [name, proof] of cases) {
        const r = await raw(t.url, '/tools/rec/items', { method: 'POST', headers: { authorization: `DPoP ${token}`, dpop: proof, 'content-type': 'application/json' }, body: '{}' });
        assert.equal(r.status, 401, name);
        assert.match(String(r.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/, name);
      }
    });
    it('refuses a replayed proof (§11.1)', async () => {
      const token = await dpopToken('rec', 'create_item');
      const h = await dpopHeaders(token, 'POST', `${iss}/tools/rec/items`);
      const first = await raw(t.url, '/tools/rec/items', { method: 'POST', headers: { ...h, 'content-type': 'application/json' }, body: '{}' });
      assert.equal(first.status, 200);
      const replay = await raw(t.url, '/tools/rec/items', { method: 'POST', headers: { ...h, 'content-type': 'application/json' }, body: '{}' });
      assert.equal(replay.status, 401);
      assert.match(JSON.parse(replay.body).error_description, /replayed/);
    });
    it('refuses the DPoP scheme with a token that is not DPoP-bound (§7.2)', async () => {
      const token = await bearer('rec', 'list_items');
      const r = await raw(t.url, '/tools/rec/items', { headers: await dpopHeaders(token, 'GET', `${iss}/tools/rec/items`) });
      assert.equal(r.status, 401);
    });
  });

  it('streams server-sent events through as they come', async () => {
    const token = await bearer('rec', 'events');
    const r = await fetch(`${t.url}/tools/rec/events`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/event-stream');
    const text = await r.text();
    assert.equal((text.match(/^data: /gm) ?? []).length, 3);
  });

  it('caps response bodies: 502 when the length is known, cut off when streamed', async () => {
    const token = await bearer('rec', 'big big_chunked');
    const known = await raw(t.url, '/tools/rec/big', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(known.status, 502);
    const streamed = await raw(t.url, '/tools/rec/big-chunked', { headers: { authorization: `Bearer ${token}` } }).catch(() => ({ status: -1, body: '' }));
    assert.ok(streamed.body.length <= 4096 + 1024, `at most the cap (plus one chunk) reached the agent: ${streamed.body.length}`);
  });

  it('answers 504 when the tool sends no headers within tools[].timeout, and audits it', async () => {
    const token = await bearer('slow', 'hang');
    const r = await raw(t.url, '/tools/slow/hang', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 504);
    assert.equal(JSON.parse(r.body).error, 'upstream_timeout');
    await t.app.audit.flush();
    // The call was forwarded (the tool may have acted): its outcome is a failed tool.called, after its tool.call_started.
    const outcomes = await t.app.store.queryAudit({ type: 'tool.called', tool: 'slow' });
    assert.ok(outcomes.some((e) => e.data.action === 'hang' && e.data.error === 'upstream_timeout' && /^failed: /.test(String(e.data.reason))), JSON.stringify(outcomes.map((e) => e.data)));
    assert.equal((await t.app.store.queryAudit({ type: 'tool.call_denied', tool: 'slow' })).filter((e) => e.data.action === 'hang').length, 0);
  });

  it('stops reading from the tool when the agent goes away mid-stream, and records the call', async () => {
    const token = await bearer('slow', 'forever');
    const ac = new AbortController();
    const r = await fetch(`${t.url}/tools/slow/forever`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    assert.equal(r.status, 200);
    const reader = r.body!.getReader();
    const first = await reader.read();
    assert.match(Buffer.from(first.value!).toString('utf8'), /^id: 1\ndata: /);
    ac.abort();
    // The proxy aborts its upstream request: the tool sees its client go away.
    await rec.foreverClosed(1);
    await t.app.audit.flush();
    const called = await t.app.store.queryAudit({ type: 'tool.called', tool: 'slow' });
    assert.ok(called.some((e) => e.data.action === 'forever' && e.data.upstream_status === 200 && Number(e.data.response_bytes) > 0), JSON.stringify(called.map((e) => e.data)));
  });

  it('rate limits per NHI and tool with 429 and Retry-After', async () => {
    const token = await bearer('limited', 'ping');
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let i = 0; i < 4; i++) {
      const r = await raw(t.url, '/tools/limited/ping', { headers: { authorization: `Bearer ${token}` } });
      statuses.push(r.status);
      if (r.status === 429) retryAfter = String(r.headers['retry-after']);
    }
    assert.deepEqual(statuses.slice(0, 2), [200, 200]);
    assert.equal(statuses[2], 429);
    assert.ok(Number(retryAfter) >= 1);
  });

  it('routes a tool host name to the tool', async () => {
    const token = await bearer('hosted', 'ping');
    const r = await raw(t.url, '/ping', { headers: { authorization: `Bearer ${token}`, host: 'rec.tools.test' } });
    assert.equal(r.status, 200, r.body);
  });

  it('applies Cedar policies: a forbid on arguments denies with the deciding policy named', async () => {
    const token = await bearer('rec', 'get_item', bob);
    assert.equal((await raw(t.url, '/tools/rec/items/7', { headers: { authorization: `Bearer ${token}` } })).status, 200);
    const r = await raw(t.url, '/tools/rec/items/secret', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 403);
    assert.match(JSON.parse(r.body).error_description, /bob-no-deletes-in-prod/);
  });

  it('revocation: every token of an NHI issued before now stops working at once', async () => {
    const token = await bearer('rec', 'list_items');
    assert.equal((await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${token}` } })).status, 200);
    const k = await t.admin('POST', '/kill', { scope: 'tool', target: 'rec', reason: 'test' });
    assert.equal(k.status, 201, JSON.stringify(k.body));
    const killed = await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(killed.status, 401);
    assert.match(JSON.parse(killed.body).error_description, /kill switch/);
    assert.equal((await t.admin('DELETE', `/kill/${k.body.id}`)).status, 200);
    assert.equal((await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${token}` } })).status, 200);
    const rv = await t.admin('POST', '/revocations', { nhi: 'alice', reason: 'test' });
    assert.ok(rv.status === 200 || rv.status === 201, JSON.stringify(rv.body));
    const revoked = await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(revoked.status, 401);
    assert.match(JSON.parse(revoked.body).error_description, /revoked/);
    // A token issued after the revocation works (tokens issued in the same second are revoked: wait for the next).
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = await bearer('rec', 'list_items');
    assert.equal((await raw(t.url, '/tools/rec/items', { headers: { authorization: `Bearer ${fresh}` } })).status, 200);
  });

  describe('approval gate', () => {
    it('holds a call a policy marks @approval("required"), passes it once after a human approves', async () => {
      const token = await dpopToken('rec', 'create_item');
      const url = `${iss}/tools/rec/items`;
      const send = async () => raw(t.url, '/tools/rec/items?priority=high', {
        method: 'POST', headers: { ...(await dpopHeaders(token, 'POST', `${url}?priority=high`)), 'content-type': 'application/json' }, body: '{"title":"urgent"}',
      });
      const before = rec.seen.length;
      const held = await send();
      assert.equal(held.status, 403, held.body);
      const body = JSON.parse(held.body);
      assert.equal(body.error, 'approval_required');
      assert.match(body.approval_id, /^apr_/);
      assert.match(body.approval_uri, /\/admin\/v1\/approvals\/apr_/);
      assert.equal(rec.seen.length, before, 'a held call does not reach the tool');
      // Asking again while pending gives the same approval, not a new one.
      assert.equal(JSON.parse((await send()).body).approval_id, body.approval_id);
      const ok = await t.admin('POST', `/approvals/${body.approval_id}/approve`, { reason: 'fine' });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const passed = await send();
      assert.equal(passed.status, 200, passed.body);
      assert.equal(rec.seen.length, before + 1);
      const again = await send();
      assert.equal(again.status, 403, 'the approval passes one call');
      assert.notEqual(JSON.parse(again.body).approval_id, body.approval_id);
      // Low priority needs no approval.
      const low = await raw(t.url, '/tools/rec/items?priority=low', { method: 'POST', headers: { ...(await dpopHeaders(token, 'POST', `${url}?priority=low`)), 'content-type': 'application/json' }, body: '{}' });
      assert.equal(low.status, 200);
    });

    it('a denied approval stays denied for the same call', async () => {
      const token = await dpopToken('rec', 'create_item');
      const url = `${iss}/tools/rec/items?priority=high`;
      const send = async () => raw(t.url, '/tools/rec/items?priority=high', { method: 'POST', headers: { ...(await dpopHeaders(token, 'POST', url)), 'content-type': 'application/json' }, body: '{"title":"deny me"}' });
      const held = JSON.parse((await send()).body);
      assert.equal((await t.admin('POST', `/approvals/${held.approval_id}/deny`, { reason: 'no' })).status, 200);
      const r = await send();
      assert.equal(r.status, 403);
      assert.equal(JSON.parse(r.body).error, 'access_denied');
    });

    it('passes a destructive call once with the elevation token from the broker, bound to its arguments', async () => {
      const client = new MandateClient({ issuer: iss, clientId: 'alice', auth: { type: 'private_key_jwt', privateJwk: alice.privateJwk } });
      const created = await (await client.fetch('tickets', ['create_ticket'], '/tickets', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"title":"to delete"}' })).json() as { id: string };
      const digest = argsDigest({ params: { id: created.id }, query: {} });
      let approvalId = '';
      try {
        await client.getToken('tickets', ['delete_ticket'], { argsDigest: digest });
        assert.fail('expected approval_required');
      } catch (err) {
        assert.ok(err instanceof ApprovalRequiredError);
        approvalId = err.approvalId;
      }
      assert.equal((await t.admin('POST', `/approvals/${approvalId}/approve`, {})).status, 200);
      const del = await client.fetch('tickets', ['delete_ticket'], `/tickets/${created.id}`, { method: 'DELETE' }, { argsDigest: digest, approvalId });
      assert.equal(del.status, 200, await del.clone().text());
      // The same elevation token does not pass a second call.
      const again = await client.fetch('tickets', ['delete_ticket'], `/tickets/${created.id}`, { method: 'DELETE' }, { argsDigest: digest, approvalId });
      assert.equal(again.status, 403);
    });
  });

  it('audits every call, allowed or denied, without tokens or credentials, and publishes it on the bus', async () => {
    const seen: Array<{ subject: string; data: Record<string, unknown> }> = [];
    const sub = await t.app.bus.subscribe('tool.>', (m) => void seen.push({ subject: m.subject, data: m.data as Record<string, unknown> }));
    const token = await bearer('rec', 'get_item');
    await raw(t.url, '/tools/rec/items/9', { headers: { authorization: `Bearer ${token}`, traceparent: '00-11111111111111111111111111111111-2222222222222222-01' } });
    await raw(t.url, '/tools/rec/nope', { headers: { authorization: `Bearer ${token}` } });
    await new Promise((r) => setTimeout(r, 100));
    await sub.close();
    const audit = await t.admin('GET', '/audit?trace_id=11111111111111111111111111111111');
    const called = (audit.body.records as Array<Record<string, any>>).find((r) => r.type === 'tool.called');
    assert.ok(called, JSON.stringify(audit.body));
    assert.equal(called.actor, 'alice');
    assert.equal(called.tool, 'rec');
    assert.equal(called.decision, 'allow');
    assert.equal(called.data.action, 'get_item');
    assert.equal(called.data.upstream_status, 200);
    assert.equal(called.data.args_digest, argsDigest({ params: { id: '9' }, query: {} }));
    assert.equal(typeof called.data.latency_ms, 'number');
    assert.ok(called.data.jti);
    const all = await t.admin('GET', '/audit?tool=rec&limit=1000');
    const text = JSON.stringify(all.body);
    assert.ok(!text.includes(token), 'no token in the audit log');
    assert.ok(!text.includes(REC_KEY), 'no tool credential in the audit log');
    assert.ok((all.body.records as Array<Record<string, any>>).some((r) => r.type === 'tool.call_denied' && r.data.reason.includes('no declared action')));
    assert.ok(seen.some((m) => m.subject === 'tool.called' && m.data.action === 'get_item'));
    assert.ok(seen.some((m) => m.subject === 'tool.call_denied'));
  });
});
