import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { call, json, rawHttp, startTarget, type Target } from './harness.js';

/**
 * Request targets, as an agent with a token for one action would write them to reach another:
 * encoded and dotted paths, a query that two servers read two ways, and request targets whose
 * host disagrees with the Host header. What reached the tool must be exactly what was authorized.
 */
describe('adversarial: paths and request targets', () => {
  let x: Target;
  let reader: string;
  before(async () => {
    x = await startTarget({
      tools: { rec: { hosts: ['rec.tools.test'] } },
      policy: [
        '@id("no-deleted-listings") forbid (principal, action == Mandate::Action::"list_items", resource)',
        '  when { context.args has query && context.args.query has status && context.args.query.status == "deleted" };',
      ],
    });
    reader = await x.token(x.bob, 'rec', 'list_items get_item');
  });
  after(async () => x.close());
  beforeEach(() => {
    x.rec.seen.length = 0;
  });
  const host = () => new URL(x.iss).host;
  const get = (target: string, hostHeader = host()) => rawHttp(x.iss, `GET ${target} HTTP/1.1\nHost: ${hostHeader}\nAuthorization: Bearer ${reader}`);

  it('dot segments and unreserved escapes are resolved, and the tool gets the path that was authorized', async () => {
    for (const [target, upstream] of [
      ['/tools/rec/items/1/../2', '/api/items/2'],
      ['/tools/rec/./items', '/api/items'],
      ['/tools/rec/items/%32', '/api/items/2'],
      ['/tools/rec/items/x/%2e%2e/3', '/api/items/3'],
    ] as const) {
      x.rec.seen.length = 0;
      const r = await get(target);
      assert.equal(r.status, 200, `${target}: ${r.body}`);
      assert.deepEqual(x.rec.seen.map((s) => s.url), [upstream], target);
    }
  });

  it('escapes that could hide a separator or climb out are refused, and nothing reaches the tool', async () => {
    for (const target of [
      '/tools/rec/items/1%2fdelete', '/tools/rec/items/..%2f..%2fadmin', '/tools/rec/items/%5c..%5cadmin', '/tools/rec/items/%252e%252e',
      '/tools/rec/../../admin', '/tools/rec/items/%00', '/tools/rec/items/%c0%ae%c0%ae', '/tools/rec/items/%ff', '/tools/rec/items/1%0d%0aX-Injected:%201',
    ]) {
      const r = await get(target);
      assert.ok(r.status >= 400 && r.status < 500, `${target}: ${r.status} ${r.body}`);
    }
    assert.equal(x.rec.seen.length, 0);
  });

  it('a path that is not a declared action is refused, whatever it resembles', async () => {
    for (const target of ['/tools/rec/items;x=1', '/tools/rec/items/', '/tools/rec/Items', '/tools/rec/items/1/delete', '/tools/rec/items%20', '/tools/rec/admin']) {
      const r = await get(target);
      assert.equal(r.status, 403, `${target}: ${r.status} ${r.body}`);
    }
    assert.equal(x.rec.seen.length, 0);
  });

  describe('a query has one reading', () => {
    it('a repeated parameter, in any case or encoding, is refused: the policy and the tool could take different values', async () => {
      for (const q of ['status=open&status=deleted', 'status=deleted&status=open', 'status=open&STATUS=deleted', 'status=open&%73tatus=deleted', 'stat%75s=open&status=deleted']) {
        const r = await call(x.iss, `/tools/rec/items?${q}`, { headers: { authorization: `Bearer ${reader}` } });
        assert.equal(r.status, 400, `${q}: ${r.body}`);
        assert.equal(json(r).error, 'invalid_request');
      }
      assert.equal(x.rec.seen.length, 0);
    });

    it("an access_token in the query is refused: the agent's token would travel on to the tool", async () => {
      for (const q of ['access_token=abc', 'a=1&ACCESS_TOKEN=abc', 'access%5Ftoken=abc']) {
        const r = await call(x.iss, `/tools/rec/items?${q}`, { headers: { authorization: `Bearer ${reader}` } });
        assert.equal(r.status, 400, `${q}: ${r.body}`);
      }
      assert.equal(x.rec.seen.length, 0);
    });

    it('two names some server reads as one are refused: PHP registration, upper-case folding, a value and an array', async () => {
      for (const q of ['status=open&+status=deleted', 'status=open&status%00x=deleted', 'a.b=1&a_b=2', '\u0131d=2&id=1', 'status=open&status[]=deleted', 'status[]=deleted&status=open']) {
        const r = await call(x.iss, `/tools/rec/items?${encodeURI(q).replace(/%25/g, '%')}`, { headers: { authorization: `Bearer ${reader}` } });
        assert.equal(r.status, 400, `${q}: ${r.status} ${r.body}`);
      }
      const members = await call(x.iss, '/tools/rec/items?filter[status]=open&filter[owner]=me', { headers: { authorization: `Bearer ${reader}` } });
      assert.equal(members.status, 200, `array members with distinct keys are distinct parameters: ${members.body}`);
      assert.equal(x.rec.seen.length, 1);
    });

    it('a ";" separator is refused', async () => {
      for (const q of ['status=open;status=deleted', 'a=1;status=deleted', 'status=open%3Bx;y']) {
        const r = await call(x.iss, `/tools/rec/items?${q}`, { headers: { authorization: `Bearer ${reader}` } });
        assert.equal(r.status, 400, `${q}: ${r.body}`);
      }
      assert.equal(x.rec.seen.length, 0);
    });

    it('an unambiguous query reaches the tool byte for byte, and the policy sees its values', async () => {
      const ok = await call(x.iss, '/tools/rec/items?status=open&b=%20x+y&c=%3B', { headers: { authorization: `Bearer ${reader}` } });
      assert.equal(ok.status, 200, ok.body);
      assert.deepEqual(x.rec.seen.map((s) => s.url), ['/api/items?status=open&b=%20x+y&c=%3B']);
      const denied = await call(x.iss, '/tools/rec/items?status=deleted', { headers: { authorization: `Bearer ${reader}` } });
      assert.equal(denied.status, 403);
      assert.match(json(denied).error_description, /no-deleted-listings/);
      const encoded = await call(x.iss, '/tools/rec/items?%73tatus=%64eleted', { headers: { authorization: `Bearer ${reader}` } });
      assert.equal(encoded.status, 403, 'the policy decodes as the tool does');
      assert.equal(x.rec.seen.length, 1);
    });
  });

  describe('request targets (RFC 9112 §3.2)', () => {
    it('an absolute-form target is served by its own authority and path, whatever Host says', async () => {
      const r = await get(`http://${host()}/tools/rec/items`, 'unrelated.example');
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(x.rec.seen.map((s) => s.url), ['/api/items']);
      assert.equal(x.rec.seen[0]!.headers['x-forwarded-host'], host(), 'the upstream learns the host that was served');
    });

    it('a tool reached by host name: the target authority decides, not a Host header that disagrees', async () => {
      const byHost = await get('/items', 'rec.tools.test');
      assert.equal(byHost.status, 200, byHost.body);
      const byTarget = await get('http://rec.tools.test/items', 'elsewhere.example');
      assert.equal(byTarget.status, 200, byTarget.body);
      // Host names the tool, the target names none: the target wins, so the tool is not reached.
      const mismatch = await get(`http://${host()}/items`, 'rec.tools.test');
      assert.equal(mismatch.status, 404, mismatch.body);
      assert.deepEqual(x.rec.seen.map((s) => s.url), ['/api/items', '/api/items']);
    });

    it('other request-target forms, schemes and userinfo are refused', async () => {
      for (const target of ['*', `${host()}:80`, `ftp://${host()}/tools/rec/items`, `http://user:pass@${host()}/tools/rec/items`, 'tools/rec/items', `http:///tools/rec/items`]) {
        const r = await get(target);
        assert.equal(r.status, 400, `${target}: ${r.status} ${r.body}`);
      }
      assert.equal(x.rec.seen.length, 0);
    });
  });
});
