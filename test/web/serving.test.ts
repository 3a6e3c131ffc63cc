import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { CONSOLE_CSP } from '../../src/web/index.js';

/** /ui/ over plain HTTP: headers, assets, sign-in, the admin API with a session, the event stream. */
describe('console: serving, sessions and the admin API', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(undefined, { nhis: [{ id: 'bot', class: 'agent', owner: 'o@example.com', system: 's', tier: 'read' }] });
  });
  after(async () => {
    await t.app.close();
  });

  const assertSecurityHeaders = (r: Response, what: string) => {
    assert.equal(r.headers.get('content-security-policy'), CONSOLE_CSP, what);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', what);
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer', what);
  };
  const signIn = async (credential = t.token) => {
    const r = await fetch(`${t.url}/ui/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ credential }) });
    const body = (await r.json()) as { csrf_token: string; role: string };
    return { r, body, cookie: (r.headers.get('set-cookie') ?? '').split(';')[0]! };
  };

  it('serves the page and its assets with content types, ETags and the security headers', async () => {
    const page = await fetch(`${t.url}/ui/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    assertSecurityHeaders(page, 'index');
    const html = await page.text();
    assert.ok(!/<script>|<script [^>]*>[^<]/.test(html), 'no inline script');
    for (const [path, type] of <Array<[string, string]>>[['assets/js/main.js', 'text/javascript'], ['assets/vendor/preact.js', 'text/javascript'], ['assets/app.css', 'text/css'], ['assets/vendor/uplot.js', 'text/javascript']]) {
      const r = await fetch(`${t.url}/ui/${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type')!, new RegExp(`^${type}`), path);
      assertSecurityHeaders(r, path);
      const etag = r.headers.get('etag')!;
      assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
      assert.equal((await fetch(`${t.url}/ui/${path}`, { headers: { 'if-none-match': etag } })).status, 304);
    }
    const vendor = await (await fetch(`${t.url}/ui/assets/vendor/hooks.js`)).text();
    assert.ok(!/from\s*["']preact["']/.test(vendor), 'bare imports rewritten (no import map needed)');
    const redirect = await fetch(`${t.url}/ui`, { redirect: 'manual' });
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.get('location'), '/ui/');
    const missing = await fetch(`${t.url}/ui/assets/nope.js`);
    assert.equal(missing.status, 404);
    assertSecurityHeaders(missing, '404');
    assert.equal((await fetch(`${t.url}/ui/assets/../../../package.json`)).status, 404);
  });

  it('signs in with an admin credential only; the cookie is HttpOnly, SameSite=Strict', async () => {
    const bad = await signIn(`${t.token.slice(0, -2)}xx`);
    assert.equal(bad.r.status, 401);
    assert.equal(bad.r.headers.get('set-cookie'), null);
    assertSecurityHeaders(bad.r, 'sign-in error');
    const { r, body } = await signIn();
    assert.equal(r.status, 201);
    assert.equal(body.role, 'admin');
    assert.match(r.headers.get('set-cookie')!, /^mandate_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    assert.ok(!JSON.stringify(body).includes(t.token.split('.')[2]!), 'the credential is not echoed');
  });

  it('lets the admin API use the session: reads with the cookie, changes with the CSRF token from the same origin', async () => {
    const { cookie, body } = await signIn();
    const get = await fetch(`${t.url}/admin/v1/whoami`, { headers: { cookie } });
    assert.equal(get.status, 200);
    const change = (headers: Record<string, string>) => fetch(`${t.url}/admin/v1/nhis/bot/disable`, {
      method: 'POST', headers: { cookie, 'content-type': 'application/json', ...headers }, body: '{}',
    });
    assert.equal((await change({})).status, 403, 'no CSRF token');
    assert.equal((await change({ 'x-csrf-token': body.csrf_token })).status, 403, 'no Origin');
    assert.equal((await change({ 'x-csrf-token': body.csrf_token, origin: 'http://evil.example' })).status, 403, 'foreign Origin');
    const ok = await change({ 'x-csrf-token': body.csrf_token, origin: new URL(t.url).origin });
    assert.equal(ok.status, 200, await ok.clone().text());
    const audit = await t.admin('GET', '/audit?type=nhi.disabled&subject=bot');
    const whoami = (await get.json()) as { id: string };
    assert.equal(audit.body.records[0]?.actor, `admin:${whoami.id}`, 'changes are audited as the credential');
    // The bearer path is unchanged, and a bearer request never falls back to the cookie.
    assert.equal((await t.admin('POST', '/nhis/bot/enable', {})).status, 200);
    const wrongBearer = await fetch(`${t.url}/admin/v1/whoami`, { headers: { cookie, authorization: 'Bearer nope' } });
    assert.equal(wrongBearer.status, 401);
  });

  it('signs out: the cookie no longer opens the API', async () => {
    const { cookie, body } = await signIn();
    const out = await fetch(`${t.url}/ui/session`, { method: 'DELETE', headers: { cookie, 'x-csrf-token': body.csrf_token, origin: new URL(t.url).origin } });
    assert.equal(out.status, 200);
    assert.match(out.headers.get('set-cookie')!, /Max-Age=0/);
    assert.equal((await fetch(`${t.url}/admin/v1/whoami`, { headers: { cookie } })).status, 401);
    assert.equal((await fetch(`${t.url}/ui/session`, { headers: { cookie } })).status, 401);
  });

  it('streams approval, revocation and kill events to a signed-in console, and refuses one that is not', async () => {
    assert.equal((await fetch(`${t.url}/ui/events`)).status, 401);
    const events = t.app.console!.events;
    // No console connected: the instance reads nothing of the bus for it.
    assert.equal(events.subscribed, false);
    const { cookie } = await signIn();
    const ac = new AbortController();
    const r = await fetch(`${t.url}/ui/events`, { headers: { cookie }, signal: ac.signal });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/event-stream');
    const reader = r.body!.getReader();
    let text = '';
    const until = async (re: RegExp) => {
      while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      return text;
    };
    await until(/: connected/);
    assert.equal((await t.admin('POST', '/revocations', { nhi: 'bot', reason: 'stream test' })).status, 201);
    await until(/event: revocation\.added\ndata: .*\n\n/);
    const data = JSON.parse(/event: revocation\.added\ndata: (.*)\n/.exec(text)![1]!);
    assert.equal(data.target, 'bot');
    assert.equal(data.reason, 'stream test');
    assert.equal(events.subscribed, true);
    ac.abort();
    await reader.closed.catch(() => undefined);
    // The last console left: the subscriptions close (the server sees the close when its socket ends).
    while (events.connected > 0 || events.subscribed) await new Promise((r) => setImmediate(r));
    assert.equal(events.subscribed, false);
  });

  it('declares the console session in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${t.url}/admin/v1/openapi.json`)).json()) as { components: { securitySchemes: Record<string, unknown> } };
    assert.ok(doc.components.securitySchemes.consoleSession);
  });
});
