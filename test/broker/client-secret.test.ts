import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestApp, type TestApp } from '../helpers/app.js';

/** RFC 6749 §2.3.1 client secrets: accepted only for an NHI whose static secret is a current, recorded exception. */
describe('client_secret_basic / client_secret_post only as a recorded exception', () => {
  let t: TestApp;
  const secret = 'a-long-random-legacy-secret-value';
  before(async () => {
    t = await startTestApp(undefined, {
      tokens: { profiles: [{ name: 'read', ttl: '5m', binding: 'optional' }] },
      nhis: [
        { id: 'legacy', class: 'workload', owner: 'o', system: 's', tier: 'read', credentials: [{ type: 'static_secret', secret: 'env:LEGACY_SECRET', exception: { ticket: 'SEC-9', expires: '2099-12-31' } }] },
        { id: 'lapsed', class: 'workload', owner: 'o', system: 's', tier: 'read', credentials: [{ type: 'static_secret', secret: 'env:LEGACY_SECRET', exception: { ticket: 'SEC-8', expires: '2001-01-01' } }] },
      ],
      tools: [{ id: 'wiki', kind: 'http', upstream: 'http://127.0.0.1:9', actions: [{ name: 'read_page', method: 'GET', path: '/pages', tier: 'read' }] }],
      grants: [{ nhi: 'legacy', tool: 'wiki', actions: ['read_page'] }, { nhi: 'lapsed', tool: 'wiki', actions: ['read_page'] }],
    }, { LEGACY_SECRET: secret });
  });
  after(() => t.app.close());

  const ask = async (headers: Record<string, string>, form: Record<string, string> = {}) => {
    const res = await fetch(`${t.url}/oauth/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'read_page', resource: `${t.app.issuer}/tools/wiki`, ...form }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, string> };
  };
  const basic = (id: string, s: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${s}`).toString('base64')}` });

  it('accepts the secret of a current exception (basic and post), with an unbound Bearer token where the profile allows it', async () => {
    const r = await ask(basic('legacy', secret));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.token_type, 'Bearer');
    assert.equal((await ask({}, { client_id: 'legacy', client_secret: secret })).status, 200);
  });

  it('RFC 6749 §5.2: a wrong secret is invalid_client (401 with WWW-Authenticate)', async () => {
    const r = await ask(basic('legacy', 'wrong'));
    assert.equal(r.status, 401);
    assert.equal(r.body.error, 'invalid_client');
    assert.match(r.headers.get('www-authenticate') ?? '', /^Basic /);
  });

  it('refuses the secret once the exception has ended', async () => {
    const r = await ask(basic('lapsed', secret));
    assert.equal(r.body.error, 'invalid_client');
  });

  it('RFC 6749 §2.3: two authentication methods at once are refused', async () => {
    const r = await ask(basic('legacy', secret), { client_secret: secret });
    assert.equal(r.body.error, 'invalid_request');
  });

  it('an NHI without a static secret cannot use one', async () => {
    const r = await ask(basic('nobody', secret));
    assert.equal(r.body.error, 'invalid_client');
  });
});
