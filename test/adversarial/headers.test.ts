import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { call, json, rawHttp, startTarget, REC_KEY, type Target } from './harness.js';
import { ROUTING_OVERRIDES } from '../../src/proxy/headers.js';

/**
 * Request headers, as an agent would use them to make the tool do something else than what the
 * proxy authorized, learn or replace the tool's credential, or claim to be someone else.
 */
describe('adversarial: request headers', () => {
  let x: Target;
  let reader: string;
  let writer: string;
  before(async () => {
    x = await startTarget();
    reader = await x.token(x.bob, 'rec', 'list_items get_item');
    writer = await x.token(x.alice, 'rec', 'create_item');
  });
  after(async () => x.close());
  beforeEach(() => {
    x.rec.seen.length = 0;
  });

  it('routing overrides (X-Original-URL, X-Rewrite-URL, …) never reach the tool', async () => {
    const headers: Record<string, string> = { authorization: `Bearer ${reader}` };
    for (const name of ROUTING_OVERRIDES) headers[name] = '/api/items/1/delete';
    headers['X-Original-URL'] = '/api/admin';
    const r = await call(x.iss, '/tools/rec/items', { headers });
    assert.equal(r.status, 200, r.body);
    const got = x.rec.seen[0]!.headers;
    for (const name of [...ROUTING_OVERRIDES, 'x-original-url', 'x-rewrite-url']) assert.equal(got[name], undefined, name);
    assert.equal(x.rec.seen[0]!.url, '/api/items');
  });

  it('method overrides in a header, the query or any spelling of them are refused before anything is sent', async () => {
    const attempts: Array<[string, Record<string, string>]> = [
      ['/tools/rec/items', { 'x-http-method-override': 'DELETE' }],
      ['/tools/rec/items', { 'X-HTTP-Method': 'DELETE' }],
      ['/tools/rec/items', { 'x-method-override': 'PUT' }],
      ['/tools/rec/items?_method=DELETE', {}],
      ['/tools/rec/items?%5Fmethod=DELETE', {}],
      ['/tools/rec/items?_METHOD=DELETE', {}],
    ];
    for (const [path, extra] of attempts) {
      const r = await call(x.iss, path, { method: 'POST', headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/octet-stream', ...extra }, body: 'x' });
      assert.equal(r.status, 400, `${path} ${JSON.stringify(extra)}: ${r.body}`);
    }
    assert.equal(x.rec.seen.length, 0);
  });

  it('the agent cannot send, replace, duplicate or hide the credential header', async () => {
    const r = await rawHttp(x.iss, [
      'GET /tools/rec/items HTTP/1.1', `Host: ${new URL(x.iss).host}`, `Authorization: Bearer ${reader}`,
      'X-Api-Key: attacker-chosen', 'x-api-key: attacker-two', 'Connection: keep-alive, x-api-key',
    ].join('\n'));
    assert.equal(r.status, 200, r.body);
    const got = x.rec.seen[0]!;
    assert.equal(got.headers['x-api-key'], REC_KEY, 'exactly the real credential, once');
    assert.ok(!JSON.stringify(got.headers).includes('attacker'), JSON.stringify(got.headers));
  });

  it("the agent's own credentials and address claims never reach the tool", async () => {
    const r = await call(x.iss, '/tools/rec/items', {
      headers: {
        authorization: `Bearer ${reader}`, cookie: 'session=1', forwarded: 'for=10.0.0.1', 'x-forwarded-for': '10.0.0.1', 'x-real-ip': '10.0.0.1',
        'true-client-ip': '10.0.0.1', 'x-forwarded-host': 'admin.internal', 'x-forwarded-proto': 'https', 'x-forwarded-prefix': '/admin',
      },
    });
    assert.equal(r.status, 200, r.body);
    const got = x.rec.seen[0]!.headers;
    assert.equal(got.authorization, undefined);
    assert.equal(got.cookie, undefined);
    assert.equal(got.forwarded, undefined);
    assert.equal(got['x-real-ip'], undefined);
    assert.equal(got['x-forwarded-prefix'], undefined);
    assert.equal(got['x-forwarded-for'], '127.0.0.1', 'the proxy states the address it saw');
    assert.notEqual(got['x-forwarded-host'], 'admin.internal');
    assert.ok(!JSON.stringify(got).includes(reader), 'the token itself never leaves the proxy');
  });

  it('two Authorization headers, two DPoP headers or an unknown scheme are refused', async () => {
    const h = new URL(x.iss).host;
    for (const lines of [
      [`Authorization: Bearer ${reader}`, `Authorization: Bearer ${writer}`],
      [`Authorization: Bearer ${reader}`, 'DPoP: a.b.c', 'DPoP: d.e.f'],
      [`Authorization: Basic ${Buffer.from(`x:${reader}`).toString('base64')}`],
      [`Authorization: Bearer  ${reader} extra`],
      [`Authorization: Bearer ${reader}\u0000`],
    ]) {
      const r = await rawHttp(x.iss, ['GET /tools/rec/items HTTP/1.1', `Host: ${h}`, ...lines].join('\n'));
      assert.ok(r.status === 400 || r.status === 401, `${lines.join(' | ')}: ${r.status} ${r.body}`);
    }
    assert.equal(x.rec.seen.length, 0);
  });

  it('a request framed two ways (Content-Length and Transfer-Encoding) never reaches the tool', async () => {
    const body = '{"a":1}';
    const r = await rawHttp(x.iss, [
      'POST /tools/rec/items HTTP/1.1', `Host: ${new URL(x.iss).host}`, `Authorization: Bearer ${writer}`, 'Content-Type: application/json',
      `Content-Length: ${body.length}`, 'Transfer-Encoding: chunked',
    ].join('\n'), `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`).catch(() => ({ status: 400, headers: {}, body: '' }));
    assert.equal(r.status, 400);
    assert.equal(x.rec.seen.length, 0);
  });

  it('an unknown Content-Encoding is passed, not decoded: the proxy never reads a body two ways', async () => {
    const r = await call(x.iss, '/tools/rec/items', {
      method: 'POST', headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' }, body: 'not really gzip',
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(json(r).ok, true);
    assert.equal(x.rec.seen[0]!.body, 'not really gzip');
  });
});
